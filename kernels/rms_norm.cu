#include "kernels/rms_norm.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace hs::kernels {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

__device__ __forceinline__ float block_sum(float v) {
  __shared__ float warp_sums[kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  float total = 0.f;
  if (warp == 0) {
    total = lane < kThreads / 32 ? warp_sums[lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1) total += __shfl_xor_sync(0xffffffffu, total, o);
    if (lane == 0) warp_sums[0] = total;
  }
  __syncthreads();
  return warp_sums[0];
}

template <typename T>
__global__ void __launch_bounds__(kThreads) rms_norm_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                                            T* __restrict__ y, float* __restrict__ rstd_out,
                                                            int64_t cols, float eps) {
  const int64_t row = blockIdx.x;
  const T* xr = x + row * cols;
  T* yr = y + row * cols;
  float ss = 0.f;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    float v = to_float(xr[c]);
    ss += v * v;
  }
  float total = block_sum(ss);
  float rstd = rsqrtf(total / float(cols) + eps);
  if (rstd_out != nullptr && threadIdx.x == 0) rstd_out[row] = rstd;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    T n = from_float<T>(to_float(xr[c]) * rstd);  // cast to the input dtype first, as HF does
    yr[c] = from_float<T>(to_float(w[c]) * to_float(n));
  }
}

}  // namespace

int rms_norm_forward(const void* x, const void* w, void* y, float* rstd, int64_t rows, int64_t cols, float eps,
                     DType dtype, void* stream) {
  if (rows == 0) return cudaSuccess;
  if (rows < 0 || cols <= 0 || rows > 0x7fffffff) return cudaErrorInvalidValue;
  auto s = static_cast<cudaStream_t>(stream);
  dim3 grid(static_cast<unsigned>(rows));
  switch (dtype) {
    case DType::f32:
      rms_norm_kernel<float><<<grid, kThreads, 0, s>>>(static_cast<const float*>(x), static_cast<const float*>(w),
                                                       static_cast<float*>(y), rstd, cols, eps);
      break;
    case DType::bf16:
      rms_norm_kernel<__nv_bfloat16><<<grid, kThreads, 0, s>>>(static_cast<const __nv_bfloat16*>(x),
                                                               static_cast<const __nv_bfloat16*>(w),
                                                               static_cast<__nv_bfloat16*>(y), rstd, cols, eps);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return static_cast<int>(cudaGetLastError());
}

const char* error_string(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

}  // namespace hs::kernels
