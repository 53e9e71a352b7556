// NF4 dequantize and quantize kernels; the format, the rounding order and the memory floor are in nf4.h.
// Dequantize: one thread per 8 packed bytes (16 outputs, all in one 64-block: one absmax decode per thread),
// an 8-byte load and 16/32/64-byte stores; the code book in shared memory. Pointers that are not aligned for
// the vectors, and the last n % 16 elements, take a scalar path with the same arithmetic.
// Quantize: 16 threads per 64-block (4 elements each, absmax by shuffles), bitsandbytes' CUDA rules as its
// --use_fast_math build compiles them: the block scale is rcp.approx.ftz(absmax) (no clamp: an all-zero
// block gives NaN, i.e. code 0), each mul.ftz(x, scale) goes through its NF4 decision tree. Absmax codes: one
// 256-thread block per 256-block, its 7-step binary search over the dynamic map (it may stop one entry short
// of the nearest; kept), distances sub.ftz then abs, not fused (the PTX nvcc 13 emits for that code with
// --use_fast_math; tests/parity/nf4_bnb.py on a GPU checks it against bitsandbytes' binary).
// Dequantize pins every rounding with __fmul_rn/__fadd_rn (no FMA contraction), as bitsandbytes' kernels.
#include "kernels/nf4.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>

namespace hs::kernels {
namespace {

constexpr int kThreads = 256;

template <typename T>
__device__ __forceinline__ T cast_out(float v);
template <>
__device__ __forceinline__ float cast_out<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 cast_out<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half cast_out<__half>(float v) {
  return __float2half_rn(v);
}

template <typename T>
__device__ __forceinline__ float load_in(const T* p);
template <>
__device__ __forceinline__ float load_in<float>(const float* p) {
  return *p;
}
template <>
__device__ __forceinline__ float load_in<__nv_bfloat16>(const __nv_bfloat16* p) {
  return __bfloat162float(*p);
}
template <>
__device__ __forceinline__ float load_in<__half>(const __half* p) {
  return __half2float(*p);
}

// The absmax of 64-block b: (nested_code[code] * nested_absmax) + offset, two float32 roundings.
__device__ __forceinline__ float block_absmax(const uint8_t* absmax, const float* nested_code,
                                              const float* nested_absmax, float offset, int64_t b) {
  return __fadd_rn(__fmul_rn(__ldg(nested_code + __ldg(absmax + b)), __ldg(nested_absmax + (b >> 8))),
                   offset);
}

template <typename T>
__global__ void dequantize_kernel(const uint8_t* __restrict__ packed, const uint8_t* __restrict__ absmax,
                                  const float* __restrict__ code, const float* __restrict__ nested_absmax,
                                  const float* __restrict__ nested_code, float offset, T* __restrict__ out,
                                  int64_t n, bool vec) {
  __shared__ float s_code[16];
  if (threadIdx.x < 16) s_code[threadIdx.x] = code[threadIdx.x];
  __syncthreads();
  const int64_t groups = n / 16;
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < groups) {
    const float a = block_absmax(absmax, nested_code, nested_absmax, offset, (t * 16) >> 6);
    uint8_t bytes[8];
    if (vec) {
      const uint2 v = __ldg(reinterpret_cast<const uint2*>(packed) + t);
      *reinterpret_cast<uint2*>(bytes) = v;
    } else {
#pragma unroll
      for (int k = 0; k < 8; ++k) bytes[k] = packed[t * 8 + k];
    }
    // 16 outputs, assembled in registers and stored as 16-byte vectors.
    constexpr int kVec = 16 / sizeof(T);  // outputs per 16-byte store
    union {
      T v[16];
      uint4 u[16 / kVec];
    } o;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      o.v[2 * k] = cast_out<T>(__fmul_rn(s_code[bytes[k] >> 4], a));
      o.v[2 * k + 1] = cast_out<T>(__fmul_rn(s_code[bytes[k] & 15], a));
    }
    if (vec) {
      uint4* dst = reinterpret_cast<uint4*>(out + t * 16);
#pragma unroll
      for (int k = 0; k < 16 / kVec; ++k) dst[k] = o.u[k];
    } else {
#pragma unroll
      for (int k = 0; k < 16; ++k) out[t * 16 + k] = o.v[k];
    }
  } else if (t == groups) {
    for (int64_t i = groups * 16; i < n; ++i) {
      const uint8_t byte = packed[i >> 1];
      const int nib = (i & 1) ? (byte & 15) : (byte >> 4);
      out[i] = cast_out<T>(
          __fmul_rn(s_code[nib], block_absmax(absmax, nested_code, nested_absmax, offset, i >> 6)));
    }
  }
}

// The instructions bitsandbytes' --use_fast_math build emits for 1.0f / x, x * y and x - y.
__device__ __forceinline__ float rcp_approx_ftz(float x) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
}
__device__ __forceinline__ float mul_ftz(float a, float b) {
  float r;
  asm("mul.rn.ftz.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}
// bitsandbytes' dQuantizeNF4 (its CUDA decision tree; x > threshold goes up).
__device__ __forceinline__ uint8_t quantize_nf4_value(float x) {
  if (x > 0.03979014977812767f) {
    if (x > 0.3893125355243683f) {
      if (x > 0.6427869200706482f) return x > 0.8614784181118011f ? 0b1111 : 0b1110;
      return x > 0.5016634166240692f ? 0b1101 : 0b1100;
    }
    if (x > 0.2035212516784668f) return x > 0.2920137718319893f ? 0b1011 : 0b1010;
    return x > 0.1202552504837513f ? 0b1001 : 0b1000;
  }
  if (x > -0.33967943489551544f) {
    if (x > -0.13791173323988914f) return x > -0.045525018125772476f ? 0b0111 : 0b0110;
    return x > -0.23460740596055984f ? 0b0101 : 0b0100;
  }
  if (x > -0.6106329262256622f) return x > -0.4599952697753906f ? 0b0011 : 0b0010;
  return x > -0.8480964004993439f ? 0b0001 : 0b0000;
}

// 16 threads per 64-block, 4 consecutive elements each (elements past n read as 0, as bitsandbytes' loads).
template <typename T>
__global__ void quantize_blocks_kernel(const T* __restrict__ w, int64_t n, uint8_t* __restrict__ packed,
                                       float* __restrict__ absmax) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t first = t * 4;
  const int64_t blocks = (n + 63) / 64;
  const bool live = (first >> 6) < blocks;  // whole 16-lane groups are live or not together
  float v[4];
  float m = -FLT_MAX;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const int64_t i = first + k;
    v[k] = (live && i < n) ? load_in<T>(w + i) : 0.0f;
    m = fmaxf(m, fabsf(v[k]));
  }
#pragma unroll
  for (int s = 8; s >= 1; s >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, s, 16));
  if (!live) return;
  if ((threadIdx.x & 15) == 0) absmax[first >> 6] = m;
  const float scale = rcp_approx_ftz(m);
  const uint8_t q0 = quantize_nf4_value(mul_ftz(v[0], scale)), q1 = quantize_nf4_value(mul_ftz(v[1], scale));
  const uint8_t q2 = quantize_nf4_value(mul_ftz(v[2], scale)), q3 = quantize_nf4_value(mul_ftz(v[3], scale));
  const int64_t byte = first >> 1, nbytes = (n + 1) / 2;
  if (byte < nbytes) packed[byte] = uint8_t(q0 << 4 | q1);
  if (byte + 1 < nbytes) packed[byte + 1] = uint8_t(q2 << 4 | q3);
}

__device__ __forceinline__ float add_ftz(float a, float b) {
  float r;
  asm("add.rn.ftz.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}

// bitsandbytes' dQuantize<0> (CUDA, 0.50.2): 7 halving steps from entry 127 keeping the last entries probed below
// (lower, entry 0 = -1 until one is) and at-or-above (upper, entry 255 = +1 until one is); then, against the last
// probe, the neighbour on x's side wins when x is past their midpoint ((a + b) * 0.5, its fast-math build: FTZ).
// A NaN x (a 256-block whose values are all equal: nested absmax 0, x = 0 * inf) falls through to entry 0.
__device__ __forceinline__ uint8_t quantize_dynamic_value(const float* smem_code, float x) {
  int pivot = 127, upper_pivot = 255, lower_pivot = 0;
  float lower = -1.0f, upper = 1.0f;
  float val = smem_code[pivot];
  for (int i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lower_pivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upper_pivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = smem_code[pivot];
  }
  if (upper_pivot == 255) upper = smem_code[upper_pivot];
  if (lower_pivot == 0) lower = smem_code[lower_pivot];
  if (x > val) return x > mul_ftz(add_ftz(upper, val), 0.5f) ? uint8_t(upper_pivot) : uint8_t(pivot);
  return x < mul_ftz(add_ftz(lower, val), 0.5f) ? uint8_t(lower_pivot) : uint8_t(pivot);
}

// One 256-thread block per 256-block of absmax: x = absmax - offset, nested absmax = max |x| (padding 0),
// code of x * (1 / nested absmax).
__global__ void quantize_absmax_kernel(const float* __restrict__ absmax, int64_t blocks, float offset,
                                       const float* __restrict__ nested_code,
                                       uint8_t* __restrict__ absmax_code, float* __restrict__ nested_absmax) {
  __shared__ float s_code[256];
  __shared__ float s_max[kThreads / 32];
  __shared__ float s_scale;
  s_code[threadIdx.x] = nested_code[threadIdx.x];
  const int64_t i = int64_t(blockIdx.x) * 256 + threadIdx.x;
  const float x = i < blocks ? __fsub_rn(absmax[i], offset) : 0.0f;
  float m = fabsf(x);
#pragma unroll
  for (int s = 16; s >= 1; s >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, s));
  if ((threadIdx.x & 31) == 0) s_max[threadIdx.x >> 5] = m;
  __syncthreads();
  if (threadIdx.x == 0) {
    float mm = -FLT_MAX;
    for (int k = 0; k < kThreads / 32; ++k) mm = fmaxf(mm, s_max[k]);
    nested_absmax[blockIdx.x] = mm;
    s_scale = rcp_approx_ftz(mm);
  }
  __syncthreads();
  if (i < blocks) absmax_code[i] = quantize_dynamic_value(s_code, mul_ftz(x, s_scale));
}

int64_t grid_for(int64_t threads) { return (threads + kThreads - 1) / kThreads; }

}  // namespace

int nf4_dequantize(const uint8_t* packed, const uint8_t* absmax, const float* code,
                   const float* nested_absmax, const float* nested_code, float offset, void* out, int64_t n,
                   Nf4Out out_type, void* stream) {
  if (n <= 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  const int64_t grid = grid_for(n / 16 + 1);
  if (grid > int64_t(0x7fffffff)) return int(cudaErrorInvalidValue);
  const bool vec = reinterpret_cast<uintptr_t>(packed) % 8 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0;
  switch (out_type) {
    case Nf4Out::f32:
      dequantize_kernel<float><<<unsigned(grid), kThreads, 0, s>>>(
          packed, absmax, code, nested_absmax, nested_code, offset, static_cast<float*>(out), n, vec);
      break;
    case Nf4Out::bf16:
      dequantize_kernel<__nv_bfloat16><<<unsigned(grid), kThreads, 0, s>>>(
          packed, absmax, code, nested_absmax, nested_code, offset, static_cast<__nv_bfloat16*>(out), n, vec);
      break;
    case Nf4Out::f16:
      dequantize_kernel<__half><<<unsigned(grid), kThreads, 0, s>>>(
          packed, absmax, code, nested_absmax, nested_code, offset, static_cast<__half*>(out), n, vec);
      break;
    default:
      return int(cudaErrorInvalidValue);
  }
  return int(cudaGetLastError());
}

int nf4_quantize_blocks(const void* w, Nf4Out in_type, int64_t n, uint8_t* packed, float* absmax,
                        void* stream) {
  if (n <= 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  const int64_t grid = grid_for((n + 63) / 64 * 16);
  if (grid > int64_t(0x7fffffff)) return int(cudaErrorInvalidValue);
  switch (in_type) {
    case Nf4Out::f32:
      quantize_blocks_kernel<float>
          <<<unsigned(grid), kThreads, 0, s>>>(static_cast<const float*>(w), n, packed, absmax);
      break;
    case Nf4Out::bf16:
      quantize_blocks_kernel<__nv_bfloat16>
          <<<unsigned(grid), kThreads, 0, s>>>(static_cast<const __nv_bfloat16*>(w), n, packed, absmax);
      break;
    case Nf4Out::f16:
      quantize_blocks_kernel<__half>
          <<<unsigned(grid), kThreads, 0, s>>>(static_cast<const __half*>(w), n, packed, absmax);
      break;
    default:
      return int(cudaErrorInvalidValue);
  }
  return int(cudaGetLastError());
}

int nf4_quantize_absmax(const float* absmax, int64_t blocks, float offset, const float* nested_code,
                        uint8_t* absmax_code, float* nested_absmax, void* stream) {
  if (blocks <= 0) return 0;
  const int64_t grid = (blocks + 255) / 256;
  if (grid > int64_t(0x7fffffff)) return int(cudaErrorInvalidValue);
  quantize_absmax_kernel<<<unsigned(grid), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      absmax, blocks, offset, nested_code, absmax_code, nested_absmax);
  return int(cudaGetLastError());
}

}  // namespace hs::kernels
