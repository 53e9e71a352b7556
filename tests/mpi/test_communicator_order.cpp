// The MPI communicator's floating-point sums add the ranks' values in rank order, whatever the tensor's size
// (MPI_Allreduce would pick a size-dependent algorithm and with it another order): each rank knows what
// every rank sends, computes the rank-order sum itself, and wants the same bits from all_reduce_sum (small
// and large tensors, float and double), from reduce_scatter_sum of its chunk, and wants all_gather to lay the
// ranks' tensors out in rank order. The values make other orders give other bits (1e16 + 1 + 1 != 1e16 + 2).
#include <ATen/ATen.h>

#include <cstdint>
#include <cstring>

#include "dist/communicator.h"
#include "dist/mpi_runtime.h"
#include "support/test_support.h"

namespace {
using hs::dist::Mpi;

// Rank r's value at element i: a huge value on rank 0 at some elements, small ones elsewhere.
at::Tensor values_of(int r, int64_t n, at::ScalarType type) {
  at::Tensor i = at::arange(n, at::kDouble);
  at::Tensor big = (i.remainder(3) == 0).to(at::kDouble) * (r == 0 ? 1e16 : 0.0);
  at::Tensor small = at::ones({n}, at::kDouble) * (r == 0 ? 0.0 : 1.0) + i.remainder(7) * 0.1 * (r + 1);
  at::Tensor v = big + small;
  if (type == at::kFloat) v = v / 1e8;  // 1e8 + 1 + 1 != 1e8 + 2 in float
  return v.to(type);
}

at::Tensor rank_order_sum(int world, int64_t n, at::ScalarType type) {
  at::Tensor s = values_of(0, n, type);
  for (int r = 1; r < world; ++r) s = s + values_of(r, n, type);
  return s;
}

bool same_bits(const at::Tensor& a, const at::Tensor& b) {
  return a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() &&
         std::memcmp(a.data_ptr(), b.data_ptr(), size_t(a.nbytes())) == 0;
}

TEST(CommunicatorOrder, AllReduceAddsInRankOrderAtEverySize) {
  ASSERT_TRUE(Mpi::active());
  auto comm = hs::dist::make_communicator(at::Device(at::kCPU));
  const int me = comm->rank(), world = comm->world();
  for (auto type : {at::kFloat, at::kDouble})
    for (int64_t n : {int64_t(1), int64_t(5), int64_t(1000), int64_t(300000)}) {
      at::Tensor t = values_of(me, n, type);
      comm->all_reduce_sum(t);
      EXPECT_TRUE(same_bits(t, rank_order_sum(world, n, type))) << "n=" << n << " " << type;
      at::Tensor a = values_of(me, n, type);  // the async form, on CPU done at once
      comm->all_reduce_sum_async(a);
      comm->wait_pending();
      EXPECT_TRUE(same_bits(a, t)) << "async n=" << n;
    }
}

TEST(CommunicatorOrder, ReduceScatterAndAllGather) {
  auto comm = hs::dist::make_communicator(at::Device(at::kCPU));
  const int me = comm->rank(), world = comm->world();
  for (int64_t n : {int64_t(1), int64_t(4099)}) {
    at::Tensor in = values_of(me, n * world, at::kFloat), out = at::empty({n}, at::kFloat);
    comm->reduce_scatter_sum(in, out);
    EXPECT_TRUE(same_bits(out, rank_order_sum(world, n * world, at::kFloat).narrow(0, me * n, n)))
        << "reduce-scatter n=" << n;
    at::Tensor mine = at::full({n}, double(me) + 0.5, at::kBFloat16);
    at::Tensor all = at::empty({n * world}, at::kBFloat16);
    comm->all_gather(mine, all);
    for (int r = 0; r < world; ++r)
      EXPECT_TRUE(same_bits(all.narrow(0, r * n, n).contiguous(),
                            at::full({n}, double(r) + 0.5, at::kBFloat16)))
          << "all-gather rank " << r;
  }
}

}  // namespace
