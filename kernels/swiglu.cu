// SwiGLU forward and backward kernels; the formulas and their rounding points are in swiglu.h. Elementwise
// and memory-bound. Floors (H100, 3.35 TB/s): forward reads g, u and writes h (6 bytes/element in bf16);
// backward reads dh, g, u and writes dg, du (10 bytes/element; 12 with h, swiglu_backward_h); silu is recomputed
// in backward, never saved. Measured (H100, bench/kernels_bench, 16384 x 8192 bf16): forward 265 us (floor 240),
// backward 442 us (401), backward + h 534 us (481): ~90% of the floor's speed.
// Layout: grid.y walks rows, grid.x * blockDim.x covers a row in "units": a unit is one V-element vector
// (V = 16 bytes / element size when every pointer and stride allows it, else 1) or one element of the
// scalar tail (cols % V). Each thread reads all its inputs before it writes, so in-place calls are safe.
#include "kernels/swiglu.h"

#include <initializer_list>

#include "kernels/elementwise.cuh"

namespace hs::kernels {
namespace {

using detail::from_float;
using detail::to_float;

constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;

// ATen's CUDA silu and silu_backward formulas, written the same way so they compile to the same code.
__device__ __forceinline__ float silu(float g) { return g / (1.0f + expf(-g)); }
__device__ __forceinline__ float silu_grad(float dy, float g) {
  const float sig = 1.0f / (1.0f + expf(-g));
  return dy * sig * (1.0f + g * (1.0f - sig));
}

template <typename T>
struct FwdOp {
  __device__ __forceinline__ static T apply(T g, T u) {
    const float s = to_float(from_float<T>(silu(to_float(g))));
    return from_float<T>(s * to_float(u));
  }
};

template <typename T>
__device__ __forceinline__ void bwd_one(T dh, T g, T u, T& dg, T& du) {
  const float dhf = to_float(dh), gf = to_float(g), uf = to_float(u);
  const float s = to_float(from_float<T>(silu(gf)));
  const float ds = to_float(from_float<T>(dhf * uf));
  du = from_float<T>(dhf * s);
  dg = from_float<T>(silu_grad(ds, gf));
}

template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    swiglu_fwd_kernel(const T* g, const T* u, T* h, int64_t rows, int64_t cols, int64_t ld_gu, int64_t ld_h) {
  const int64_t nvec = cols / V, units = nvec + (cols - nvec * V);
  const int64_t unit = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (unit >= units) return;
  const bool vec = unit < nvec;
  const int64_t c = vec ? unit * V : nvec * V + (unit - nvec);
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const T* gr = g + r * ld_gu + c;
    const T* ur = u + r * ld_gu + c;
    T* hr = h + r * ld_h + c;
    if (vec) {
      const auto gv = detail::load_pack<T, V>(gr), uv = detail::load_pack<T, V>(ur);
      detail::Pack<T, V> hv;
#pragma unroll
      for (int k = 0; k < V; ++k) hv.v[k] = FwdOp<T>::apply(gv.v[k], uv.v[k]);
      detail::store_pack<T, V>(hr, hv);
    } else {
      *hr = FwdOp<T>::apply(*gr, *ur);
    }
  }
}

template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    swiglu_bwd_kernel(const T* dh, const T* g, const T* u, T* dg, T* du, T* h, int64_t rows, int64_t cols,
                      int64_t ld_gu, int64_t ld_dh, int64_t ld_dgu, int64_t ld_h) {
  const int64_t nvec = cols / V, units = nvec + (cols - nvec * V);
  const int64_t unit = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (unit >= units) return;
  const bool vec = unit < nvec;
  const int64_t c = vec ? unit * V : nvec * V + (unit - nvec);
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const T* dhr = dh + r * ld_dh + c;
    const T* gr = g + r * ld_gu + c;
    const T* ur = u + r * ld_gu + c;
    T* dgr = dg + r * ld_dgu + c;
    T* dur = du + r * ld_dgu + c;
    if (vec) {
      const auto dhv = detail::load_pack<T, V>(dhr), gv = detail::load_pack<T, V>(gr),
                 uv = detail::load_pack<T, V>(ur);
      detail::Pack<T, V> dgv, duv, hv;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        if (h != nullptr) hv.v[k] = FwdOp<T>::apply(gv.v[k], uv.v[k]);
        bwd_one(dhv.v[k], gv.v[k], uv.v[k], dgv.v[k], duv.v[k]);
      }
      detail::store_pack<T, V>(dgr, dgv);
      detail::store_pack<T, V>(dur, duv);
      if (h != nullptr) detail::store_pack<T, V>(h + r * ld_h + c, hv);
    } else {
      const T gs = *gr, us = *ur;
      T dgs, dus;
      bwd_one(*dhr, gs, us, dgs, dus);
      *dgr = dgs;
      *dur = dus;
      if (h != nullptr) h[r * ld_h + c] = FwdOp<T>::apply(gs, us);
    }
  }
}

// Grid for `rows` rows of `units` units each (see the file comment).
dim3 grid_for(int64_t rows, int64_t cols, int v) {
  const int64_t nvec = cols / v, units = nvec + (cols - nvec * v);
  return dim3(static_cast<unsigned>((units + kThreads - 1) / kThreads),
              static_cast<unsigned>(rows < kMaxGridY ? rows : kMaxGridY));
}

template <typename T>
int launch_fwd(const void* g, const void* u, void* h, int64_t rows, int64_t cols, int64_t ld_gu, int64_t ld_h,
               cudaStream_t s) {
  constexpr int V = detail::kVec16<T>;
  const bool vec = detail::aligned16(g) && detail::aligned16(u) && detail::aligned16(h) && ld_gu % V == 0 &&
                   ld_h % V == 0 && cols >= V;
  const T* gp = static_cast<const T*>(g);
  const T* up = static_cast<const T*>(u);
  T* hp = static_cast<T*>(h);
  if (vec)
    swiglu_fwd_kernel<T, V><<<grid_for(rows, cols, V), kThreads, 0, s>>>(gp, up, hp, rows, cols, ld_gu, ld_h);
  else
    swiglu_fwd_kernel<T, 1><<<grid_for(rows, cols, 1), kThreads, 0, s>>>(gp, up, hp, rows, cols, ld_gu, ld_h);
  return static_cast<int>(cudaGetLastError());
}

template <typename T>
int launch_bwd(const void* dh, const void* g, const void* u, void* dg, void* du, void* h, int64_t rows,
               int64_t cols, int64_t ld_gu, int64_t ld_dh, int64_t ld_dgu, int64_t ld_h, cudaStream_t s) {
  constexpr int V = detail::kVec16<T>;
  const bool vec = detail::aligned16(dh) && detail::aligned16(g) && detail::aligned16(u) &&
                   detail::aligned16(dg) && detail::aligned16(du) && ld_gu % V == 0 && ld_dh % V == 0 &&
                   ld_dgu % V == 0 && cols >= V && (h == nullptr || (detail::aligned16(h) && ld_h % V == 0));
  T* hp = static_cast<T*>(h);
  const T* dhp = static_cast<const T*>(dh);
  const T* gp = static_cast<const T*>(g);
  const T* up = static_cast<const T*>(u);
  T* dgp = static_cast<T*>(dg);
  T* dup = static_cast<T*>(du);
  if (vec)
    swiglu_bwd_kernel<T, V><<<grid_for(rows, cols, V), kThreads, 0, s>>>(dhp, gp, up, dgp, dup, hp, rows, cols,
                                                                         ld_gu, ld_dh, ld_dgu, ld_h);
  else
    swiglu_bwd_kernel<T, 1><<<grid_for(rows, cols, 1), kThreads, 0, s>>>(dhp, gp, up, dgp, dup, hp, rows, cols,
                                                                         ld_gu, ld_dh, ld_dgu, ld_h);
  return static_cast<int>(cudaGetLastError());
}

// Shape checks shared by both launchers; 0 when the call is valid.
int check_shape(int64_t rows, int64_t cols, std::initializer_list<int64_t> lds) {
  if (rows < 0 || cols < 0) return cudaErrorInvalidValue;
  for (int64_t ld : lds)
    if (ld < cols) return cudaErrorInvalidValue;
  // grid.x counts blocks of kThreads units: keep it well inside the 2^31 - 1 limit.
  if (cols / kThreads >= (int64_t(1) << 30)) return cudaErrorInvalidValue;
  return cudaSuccess;
}

}  // namespace

int swiglu_forward(const void* g, const void* u, void* h, int64_t rows, int64_t cols, int64_t ld_gu,
                   int64_t ld_h, DType dtype, void* stream) {
  if (int rc = check_shape(rows, cols, {ld_gu, ld_h}); rc != cudaSuccess) return rc;
  if (rows == 0 || cols == 0) return cudaSuccess;
  if (g == nullptr || u == nullptr || h == nullptr) return cudaErrorInvalidValue;
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::f32:
      return launch_fwd<float>(g, u, h, rows, cols, ld_gu, ld_h, s);
    case DType::bf16:
      return launch_fwd<__nv_bfloat16>(g, u, h, rows, cols, ld_gu, ld_h, s);
  }
  return cudaErrorInvalidValue;
}

int swiglu_backward(const void* dh, const void* g, const void* u, void* dg, void* du, int64_t rows,
                    int64_t cols, int64_t ld_gu, int64_t ld_dh, int64_t ld_dgu, DType dtype, void* stream) {
  return swiglu_backward_h(dh, g, u, dg, du, nullptr, rows, cols, ld_gu, ld_dh, ld_dgu, cols, dtype, stream);
}

int swiglu_backward_h(const void* dh, const void* g, const void* u, void* dg, void* du, void* h, int64_t rows,
                      int64_t cols, int64_t ld_gu, int64_t ld_dh, int64_t ld_dgu, int64_t ld_h, DType dtype,
                      void* stream) {
  if (int rc = check_shape(rows, cols, {ld_gu, ld_dh, ld_dgu, ld_h}); rc != cudaSuccess) return rc;
  if (rows == 0 || cols == 0) return cudaSuccess;
  if (dh == nullptr || g == nullptr || u == nullptr || dg == nullptr || du == nullptr)
    return cudaErrorInvalidValue;
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::f32:
      return launch_bwd<float>(dh, g, u, dg, du, h, rows, cols, ld_gu, ld_dh, ld_dgu, ld_h, s);
    case DType::bf16:
      return launch_bwd<__nv_bfloat16>(dh, g, u, dg, du, h, rows, cols, ld_gu, ld_dh, ld_dgu, ld_h, s);
  }
  return cudaErrorInvalidValue;
}

}  // namespace hs::kernels
