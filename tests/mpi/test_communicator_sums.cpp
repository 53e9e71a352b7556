// Communicator::sum_over_ranks: each rank knows what every other rank sends (a function of the rank), so
// it computes the expected sums itself, left to right in rank order, the order the method promises; the
// doubles are chosen so that another order gives other bits, and the integers pass 2^53 (no double path).
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "core/error.h"
#include "dist/communicator.h"
#include "dist/mpi_runtime.h"
#include "support/test_support.h"

namespace {
using hs::dist::Mpi;

std::vector<double> doubles_of(int r) { return {r == 0 ? 1e16 : 1.0, 0.1 * (r + 1), -0.0}; }
std::vector<int64_t> ints_of(int r) { return {(int64_t(1) << 53) + 1 + r, -int64_t(r), 7}; }

TEST(CommunicatorSums, HostVectorsAddInRankOrder) {
  ASSERT_TRUE(Mpi::active());
  auto comm = hs::dist::make_communicator(at::Device(at::kCPU));
  const int me = comm->rank(), world = comm->world();
  ASSERT_EQ(world, Mpi::world());

  std::vector<double> want_d(3, 0.0);
  std::vector<int64_t> want_i(3, 0);
  for (int r = 0; r < world; ++r)
    for (size_t i = 0; i < 3; ++i) {
      want_d[i] += doubles_of(r)[i];
      want_i[i] += ints_of(r)[i];
    }
  const std::vector<double> got_d = comm->sum_over_ranks(doubles_of(me));
  const std::vector<int64_t> got_i = comm->sum_over_ranks(ints_of(me));
  ASSERT_EQ(got_d.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(got_d[i], want_d[i]) << "element " << i;  // bit-equal
  EXPECT_EQ(got_i, want_i);
  if (world == 3) {
    // 1e16 + 1 + 1 in rank order stays 1e16 (each 1 is half an ulp: ties to even); 1 + 1 first would not.
    EXPECT_EQ(got_d[0], 1e16);
    EXPECT_EQ(got_i[0], 3 * ((int64_t(1) << 53) + 1) + 3);
  }
  EXPECT_TRUE(comm->sum_over_ranks(std::vector<double>{}).empty());
}

TEST(CommunicatorSums, LengthsThatDifferAreAnErrorOnEveryRank) {
  auto comm = hs::dist::make_communicator(at::Device(at::kCPU));
  if (comm->world() == 1) GTEST_SKIP() << "needs two ranks or more";
  std::vector<int64_t> mine(size_t(comm->rank()) + 1, 1);
  EXPECT_THROW(comm->sum_over_ranks(mine), hs::Error);
}

}  // namespace
