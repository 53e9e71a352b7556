// dist::Communicator's byte collectives under mpiexec -n 2: each rank checks the payloads it receives against
// what it independently knows the others sent; a tensor all-reduce through the same object still sums.
#include <ATen/ATen.h>

#include <string>

#include "dist/communicator.h"
#include "dist/mpi_runtime.h"
#include "support/test_support.h"

namespace {
using hs::dist::Mpi;

std::string payload(int r) {
  return std::string(size_t(r) * 3 + 2, char('a' + r)) + "\x1f" + std::to_string(r);
}

TEST(Communicator, ByteCollectivesDeliverEveryRanksBytes) {
  ASSERT_TRUE(Mpi::active());
  auto comm = hs::dist::make_communicator(at::Device(at::kCPU));
  ASSERT_EQ(comm->world(), Mpi::world());
  const int me = comm->rank(), world = comm->world();

  auto all = comm->all_gather_bytes(payload(me));
  ASSERT_EQ(int(all.size()), world);
  for (int r = 0; r < world; ++r) EXPECT_EQ(all[size_t(r)], payload(r)) << "from rank " << r;

  auto gathered = comm->gather_bytes(payload(me), 0);
  if (me == 0) {
    ASSERT_EQ(int(gathered.size()), world);
    for (int r = 0; r < world; ++r) EXPECT_EQ(gathered[size_t(r)], payload(r));
  } else {
    EXPECT_TRUE(gathered.empty());
  }

  const int root = world - 1;
  EXPECT_EQ(comm->broadcast_bytes(me == root ? payload(root) : std::string("ignored"), root), payload(root));

  at::Tensor t = at::tensor({double(me + 1)}, at::kDouble);
  comm->all_reduce_sum(t);
  EXPECT_EQ(t.item<double>(), double(world * (world + 1) / 2));
}

}  // namespace
