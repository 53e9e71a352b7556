// RMSNorm forward and backward kernels; the formulas and their rounding order are in rms_norm.h. Floors (H100,
// 3.35 TB/s): forward reads x and writes y (4 bytes/element in bf16), backward-dx reads dy and x and writes
// dx (6 bytes/element), backward-dw reads dy and x again (4 bytes/element); all are memory-bound.
#include "kernels/rms_norm.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/elementwise.cuh"

namespace hs::kernels {
namespace {

constexpr int kThreads = 256;

using detail::from_float;
using detail::to_float;

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

template <typename T>
__global__ void __launch_bounds__(kThreads)
    rms_norm_dx_kernel(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ w,
                       const float* __restrict__ rstd_in, T* __restrict__ dx, int64_t cols) {
  const int64_t row = blockIdx.x;
  const T* dyr = dy + row * cols;
  const T* xr = x + row * cols;
  T* dxr = dx + row * cols;
  const float rstd = rstd_in[row];
  float dot = 0.f;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    float g = to_float(from_float<T>(to_float(dyr[c]) * to_float(w[c])));
    dot += g * to_float(xr[c]);
  }
  const float mean_gx = block_sum(dot) / float(cols);
  const float k = mean_gx * rstd * rstd * rstd;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    float g = to_float(from_float<T>(to_float(dyr[c]) * to_float(w[c])));
    dxr[c] = from_float<T>(rstd * g - to_float(xr[c]) * k);
  }
}

// Short rows (cols <= kWarpRowCols, e.g. Qwen3's per-head q/k norms over head_dim = 128 on rows = tokens x
// heads): one warp per row, kThreads / 32 rows per block, so no thread idles and no block barrier runs. The
// formulas are the block kernels' (only the float32 summation order differs).
constexpr int kWarpRowCols = 512, kRowsPerBlock = kThreads / 32;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    rms_norm_warp_kernel(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y,
                         float* __restrict__ rstd_out, int64_t rows, int64_t cols, float eps) {
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  const T* xr = x + row * cols;
  T* yr = y + row * cols;
  float ss = 0.f;
  for (int64_t c = lane; c < cols; c += 32) {
    float v = to_float(xr[c]);
    ss += v * v;
  }
  const float rstd = rsqrtf(warp_sum(ss) / float(cols) + eps);
  if (rstd_out != nullptr && lane == 0) rstd_out[row] = rstd;
  for (int64_t c = lane; c < cols; c += 32) {
    T n = from_float<T>(to_float(xr[c]) * rstd);
    yr[c] = from_float<T>(to_float(w[c]) * to_float(n));
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    rms_norm_dx_warp_kernel(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ w,
                            const float* __restrict__ rstd_in, T* __restrict__ dx, int64_t rows,
                            int64_t cols) {
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  const T* dyr = dy + row * cols;
  const T* xr = x + row * cols;
  T* dxr = dx + row * cols;
  const float rstd = rstd_in[row];
  float dot = 0.f;
  for (int64_t c = lane; c < cols; c += 32) {
    float g = to_float(from_float<T>(to_float(dyr[c]) * to_float(w[c])));
    dot += g * to_float(xr[c]);
  }
  const float k = warp_sum(dot) / float(cols) * rstd * rstd * rstd;
  for (int64_t c = lane; c < cols; c += 32) {
    float g = to_float(from_float<T>(to_float(dyr[c]) * to_float(w[c])));
    dxr[c] = from_float<T>(rstd * g - to_float(xr[c]) * k);
  }
}

constexpr int kDwCols = 32, kDwRows = 8;

template <typename T>
__global__ void __launch_bounds__(kDwCols* kDwRows)
    rms_norm_dw_kernel(const T* __restrict__ dy, const T* __restrict__ x, const float* __restrict__ rstd_in,
                       float* __restrict__ partial, int64_t rows, int64_t cols, int64_t rows_per_split) {
  __shared__ float acc[kDwRows][kDwCols + 1];
  const int64_t c = int64_t(blockIdx.x) * kDwCols + threadIdx.x;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per_split;
  const int64_t r1 = r0 + rows_per_split < rows ? r0 + rows_per_split : rows;
  float sum = 0.f;
  if (c < cols)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kDwRows) {
      float n = to_float(from_float<T>(to_float(x[r * cols + c]) * rstd_in[r]));
      sum += to_float(dy[r * cols + c]) * n;
    }
  acc[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float total = 0.f;
    for (int i = 0; i < kDwRows; ++i) total += acc[i][threadIdx.x];
    partial[int64_t(blockIdx.y) * cols + c] = total;
  }
}

}  // namespace

int rms_norm_backward_dx(const void* dy, const void* x, const void* w, const float* rstd, void* dx, int64_t rows,
                         int64_t cols, DType dtype, void* stream) {
  if (rows == 0) return cudaSuccess;
  if (rows < 0 || cols <= 0 || rows > 0x7fffffff) return cudaErrorInvalidValue;
  auto s = static_cast<cudaStream_t>(stream);
  if (cols <= kWarpRowCols) {
    dim3 wgrid(static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock));
    if (dtype == DType::f32)
      rms_norm_dx_warp_kernel<float><<<wgrid, kThreads, 0, s>>>(
          static_cast<const float*>(dy), static_cast<const float*>(x), static_cast<const float*>(w), rstd,
          static_cast<float*>(dx), rows, cols);
    else if (dtype == DType::bf16)
      rms_norm_dx_warp_kernel<__nv_bfloat16><<<wgrid, kThreads, 0, s>>>(
          static_cast<const __nv_bfloat16*>(dy), static_cast<const __nv_bfloat16*>(x),
          static_cast<const __nv_bfloat16*>(w), rstd, static_cast<__nv_bfloat16*>(dx), rows, cols);
    else
      return cudaErrorInvalidValue;
    return static_cast<int>(cudaGetLastError());
  }
  dim3 grid(static_cast<unsigned>(rows));
  switch (dtype) {
    case DType::f32:
      rms_norm_dx_kernel<float><<<grid, kThreads, 0, s>>>(static_cast<const float*>(dy), static_cast<const float*>(x),
                                                          static_cast<const float*>(w), rstd,
                                                          static_cast<float*>(dx), cols);
      break;
    case DType::bf16:
      rms_norm_dx_kernel<__nv_bfloat16><<<grid, kThreads, 0, s>>>(
          static_cast<const __nv_bfloat16*>(dy), static_cast<const __nv_bfloat16*>(x),
          static_cast<const __nv_bfloat16*>(w), rstd, static_cast<__nv_bfloat16*>(dx), cols);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return static_cast<int>(cudaGetLastError());
}

int64_t rms_norm_dw_splits(int64_t rows, int64_t cols) {
  // Enough blocks to fill the GPU (~4 per SM on 132 SMs) without tiny row ranges.
  const int64_t col_tiles = (cols + kDwCols - 1) / kDwCols;
  int64_t splits = (528 + col_tiles - 1) / col_tiles;
  const int64_t max_splits = (rows + 63) / 64;  // at least 64 rows per range
  if (splits > max_splits) splits = max_splits;
  return splits < 1 ? 1 : splits;
}

int rms_norm_backward_dw(const void* dy, const void* x, const float* rstd, float* dw_partial, int64_t rows,
                         int64_t cols, DType dtype, void* stream) {
  if (rows < 0 || cols <= 0 || rows > 0x7fffffff) return cudaErrorInvalidValue;
  const int64_t splits = rms_norm_dw_splits(rows, cols);
  const int64_t per = rows == 0 ? 1 : (rows + splits - 1) / splits;
  auto s = static_cast<cudaStream_t>(stream);
  dim3 grid(static_cast<unsigned>((cols + kDwCols - 1) / kDwCols), static_cast<unsigned>(splits));
  dim3 block(kDwCols, kDwRows);
  switch (dtype) {
    case DType::f32:
      rms_norm_dw_kernel<float><<<grid, block, 0, s>>>(static_cast<const float*>(dy), static_cast<const float*>(x),
                                                       rstd, dw_partial, rows, cols, per);
      break;
    case DType::bf16:
      rms_norm_dw_kernel<__nv_bfloat16><<<grid, block, 0, s>>>(static_cast<const __nv_bfloat16*>(dy),
                                                               static_cast<const __nv_bfloat16*>(x), rstd,
                                                               dw_partial, rows, cols, per);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return static_cast<int>(cudaGetLastError());
}

int rms_norm_forward(const void* x, const void* w, void* y, float* rstd, int64_t rows, int64_t cols, float eps,
                     DType dtype, void* stream) {
  if (rows == 0) return cudaSuccess;
  if (rows < 0 || cols <= 0 || rows > 0x7fffffff) return cudaErrorInvalidValue;
  auto s = static_cast<cudaStream_t>(stream);
  if (cols <= kWarpRowCols) {
    dim3 wgrid(static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock));
    if (dtype == DType::f32)
      rms_norm_warp_kernel<float><<<wgrid, kThreads, 0, s>>>(static_cast<const float*>(x),
                                                             static_cast<const float*>(w),
                                                             static_cast<float*>(y), rstd, rows, cols, eps);
    else if (dtype == DType::bf16)
      rms_norm_warp_kernel<__nv_bfloat16><<<wgrid, kThreads, 0, s>>>(
          static_cast<const __nv_bfloat16*>(x), static_cast<const __nv_bfloat16*>(w),
          static_cast<__nv_bfloat16*>(y), rstd, rows, cols, eps);
    else
      return cudaErrorInvalidValue;
    return static_cast<int>(cudaGetLastError());
  }
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
