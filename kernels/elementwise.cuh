// Device helpers shared by the kernels (rms_norm.cu, swiglu.cu, rope.cu, cross_entropy.cu): float32 <-> element conversions
// (round to nearest even) and 16-byte packs for vector loads and stores. Internal to kernels/.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace hs::kernels::detail {

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
// v rounded to T and back: the value a tensor of dtype T would hold.
template <typename T>
__device__ __forceinline__ float round_to(float v) {
  return to_float(from_float<T>(v));
}

// V elements of T, aligned to their size, so one load or store moves all of them (16 bytes when V*sizeof(T)
// == 16). V = 1 is the scalar case.
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};
template <typename T, int V>
__device__ __forceinline__ Pack<T, V> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, V>*>(p);
}
__device__ __forceinline__ uint32_t word_of(const float* v) { return __float_as_uint(v[0]); }
__device__ __forceinline__ uint32_t word_of(const __nv_bfloat16* v) {
  return uint32_t(__bfloat16_as_ushort(v[0])) | (uint32_t(__bfloat16_as_ushort(v[1])) << 16);
}
template <typename T, int V>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, V>& v) {
  if constexpr (sizeof(Pack<T, V>) == 16) {
    // One explicit 16-byte store: nvcc splits a plain struct or uint4 store into 4- or 2-byte pieces in the
    // RoPE kernel. (Global memory's generic and global addresses coincide, as CUTLASS also relies on.)
    constexpr int kPer = int(4 / sizeof(T));  // elements per 32-bit word
    asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(word_of(v.v)),
                 "r"(word_of(v.v + kPer)), "r"(word_of(v.v + 2 * kPer)), "r"(word_of(v.v + 3 * kPer))
                 : "memory");
  } else {
    *reinterpret_cast<Pack<T, V>*>(p) = v;
  }
}

// Elements of T per 16-byte vector.
template <typename T>
constexpr int kVec16 = int(16 / sizeof(T));

inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

}  // namespace hs::kernels::detail
