// hs::dist::Mpi under mpiexec -n 2 and 4: rank/world agree with the launcher's own environment, and the
// byte collectives return what each rank independently knows the others sent.
#include <cstdlib>
#include <string>

#include "dist/mpi_runtime.h"
#include "support/test_support.h"

namespace {
using hs::dist::Mpi;

// What rank r sends: a deterministic payload whose length depends on r (rank 1 sends a 3 MiB one).
std::string payload(int r) {
  size_t n = r == 1 ? (3u << 20) + 7 : size_t(r) * 5 + 1;
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = char((i * 131 + size_t(r) * 17) & 0xff);
  return s;
}

TEST(MpiRuntime, RankAndWorldMatchTheLauncher) {
  ASSERT_TRUE(Mpi::active());
  const char* size = std::getenv("OMPI_COMM_WORLD_SIZE");
  const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
  if (!size) size = std::getenv("PMI_SIZE");
  if (!rank) rank = std::getenv("PMI_RANK");
  ASSERT_TRUE(size && rank) << "not launched by mpiexec";
  EXPECT_EQ(Mpi::world(), std::atoi(size));
  EXPECT_EQ(Mpi::rank(), std::atoi(rank));
  // One node: the node-local communicator is the whole world.
  EXPECT_EQ(Mpi::local_world(), Mpi::world());
  EXPECT_EQ(Mpi::local_rank(), Mpi::rank());
}

TEST(MpiRuntime, AllgatherReturnsEveryRanksBytesInOrder) {
  auto all = Mpi::allgather(payload(Mpi::rank()));
  ASSERT_EQ(int(all.size()), Mpi::world());
  for (int r = 0; r < Mpi::world(); ++r) EXPECT_EQ(all[size_t(r)], payload(r)) << "from rank " << r;
}

TEST(MpiRuntime, GatherDeliversEveryRanksBytesToTheRootOnly) {
  for (int root : {0, Mpi::world() - 1}) {
    auto got = Mpi::gather(payload(Mpi::rank()), root);
    if (Mpi::rank() == root) {
      ASSERT_EQ(int(got.size()), Mpi::world());
      for (int r = 0; r < Mpi::world(); ++r) EXPECT_EQ(got[size_t(r)], payload(r)) << "from rank " << r;
    } else {
      EXPECT_TRUE(got.empty());
    }
  }
}

TEST(MpiRuntime, BroadcastAndSum) {
  int root = Mpi::world() - 1;
  std::string got = Mpi::broadcast(Mpi::rank() == root ? payload(1) : std::string("ignored"), root);
  EXPECT_EQ(got, payload(1));
  int64_t w = Mpi::world();
  EXPECT_EQ(Mpi::allreduce_sum(Mpi::rank()), w * (w - 1) / 2);
  EXPECT_EQ(Mpi::allreduce_sum(int64_t(1) << 40), w << 40);
  Mpi::barrier();
}

}  // namespace
