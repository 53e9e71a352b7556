// Cross-entropy rows and their gradient (see cross_entropy.h): one block of 512 threads per row; the online
// (max, sum) pairs are combined across the warp with shuffles, then across warps through shared memory.
// 16-byte vector loads/stores when the row pointer and stride allow, a scalar loop otherwise.
#include "kernels/cross_entropy.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/elementwise.cuh"

namespace hs::kernels {
namespace {

using detail::from_float;
using detail::to_float;

constexpr int kThreads = 512;

struct MaxSum {
  float m, s;
};

__device__ __forceinline__ MaxSum combine(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return {m, 0.f};
  return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

__device__ __forceinline__ void add(MaxSum& acc, float v) {
  if (v > acc.m) {
    acc.s = acc.s * expf(acc.m - v) + 1.f;
    acc.m = v;
  } else {
    acc.s += expf(v - acc.m);
  }
}

template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    ce_kernel(const T* logits, const int64_t* targets, float* loss, T* grad, int64_t vocab, int64_t ld) {
  const int64_t row = blockIdx.x;
  const T* x = logits + row * ld;
  const int64_t nvec = vocab / V;
  MaxSum acc{-INFINITY, 0.f};
  for (int64_t i = threadIdx.x; i < nvec; i += kThreads) {
    auto p = detail::load_pack<T, V>(x + i * V);
#pragma unroll
    for (int k = 0; k < V; ++k) add(acc, to_float(p.v[k]));
  }
  for (int64_t j = nvec * V + threadIdx.x; j < vocab; j += kThreads) add(acc, to_float(x[j]));
    // Warp, then block reduction of (max, sum).
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    MaxSum o{__shfl_xor_sync(0xffffffffu, acc.m, off), __shfl_xor_sync(0xffffffffu, acc.s, off)};
    acc = combine(acc, o);
  }
  __shared__ MaxSum warps[kThreads / 32];
  __shared__ float lse_shared;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warps[warp] = acc;
  __syncthreads();
  if (warp == 0) {
    acc = lane < kThreads / 32 ? warps[lane] : MaxSum{-INFINITY, 0.f};
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      MaxSum o{__shfl_xor_sync(0xffffffffu, acc.m, off), __shfl_xor_sync(0xffffffffu, acc.s, off)};
      acc = combine(acc, o);
    }
    if (lane == 0) {
      const float lse = acc.m + logf(acc.s);
      lse_shared = lse;
      const int64_t t = targets[row];
      loss[row] = (t >= 0 && t < vocab) ? lse - to_float(x[t]) : NAN;
    }
  }
  __syncthreads();
  if (grad == nullptr) return;
  const float lse = lse_shared;
  const int64_t t = targets[row];
  T* g = grad + row * ld;
  for (int64_t i = threadIdx.x; i < nvec; i += kThreads) {
    auto p = detail::load_pack<T, V>(x + i * V);
    detail::Pack<T, V> o;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const int64_t j = i * V + k;
      o.v[k] = from_float<T>(expf(to_float(p.v[k]) - lse) - (j == t ? 1.f : 0.f));
    }
    detail::store_pack<T, V>(g + i * V, o);
  }
  for (int64_t j = nvec * V + threadIdx.x; j < vocab; j += kThreads)
    g[j] = from_float<T>(expf(to_float(x[j]) - lse) - (j == t ? 1.f : 0.f));
}

template <typename T>
int launch(const void* logits, const int64_t* targets, float* loss, void* grad, int64_t rows, int64_t vocab,
           int64_t ld, cudaStream_t stream) {
  constexpr int V = detail::kVec16<T>;
  auto aligned = [](const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  const bool vec = aligned(logits) && aligned(grad) && ld % V == 0;
  const T* x = static_cast<const T*>(logits);
  T* g = static_cast<T*>(grad);
  // One block per row; grid.x is limited to 2^31 - 1 rows, far above any chunk.
  if (vec)
    ce_kernel<T, V><<<dim3(unsigned(rows)), kThreads, 0, stream>>>(x, targets, loss, g, vocab, ld);
  else
    ce_kernel<T, 1><<<dim3(unsigned(rows)), kThreads, 0, stream>>>(x, targets, loss, g, vocab, ld);
  return int(cudaGetLastError());
}

}  // namespace

int cross_entropy_forward_backward(const void* logits, const int64_t* targets, float* loss, void* grad,
                                   int64_t rows, int64_t vocab, int64_t ld, DType dtype, void* stream) {
  if (rows < 0 || vocab <= 0 || ld < vocab || rows > int64_t(0x7fffffff)) return int(cudaErrorInvalidValue);
  if (rows == 0) return 0;
  if (logits == nullptr || targets == nullptr || loss == nullptr) return int(cudaErrorInvalidValue);
  auto s = static_cast<cudaStream_t>(stream);
  return dtype == DType::bf16 ? launch<__nv_bfloat16>(logits, targets, loss, grad, rows, vocab, ld, s)
                              : launch<float>(logits, targets, loss, grad, rows, vocab, ld, s);
}

}  // namespace hs::kernels
