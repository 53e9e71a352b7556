// RoPE forward and backward kernels; the formulas and their rounding points are in rope.h. Elementwise and
// memory-bound. Floors (H100, 3.35 TB/s): x is read and written once (4 bytes/element in bf16), plus per
// token its position (8 bytes) and its cos/sin rows (2 * head_dim * 4 bytes, shared by all heads of the token
// and served mostly from L1/L2).
// Layout: a thread owns one (token, head, chunk of V pairs): it loads x1 = x[j .. j+V) and x2 = x[j+D/2 ..
// j+D/2+V) into registers before it writes either half, so out == x (in place) is safe. V = 16 bytes /
// element size when D/2, ld and every pointer allow 16-byte vectors, else 1. threadIdx.x walks (head, chunk)
// within a token, threadIdx.y and grid.y walk tokens.
#include "kernels/rope.h"

#include "kernels/elementwise.cuh"

namespace hs::kernels {
namespace {

using detail::from_float;
using detail::round_to;
using detail::to_float;

constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;

// V consecutive float32 table entries (16-byte loads when V is a multiple of 4; the launcher checks
// their alignment).
template <int V>
__device__ __forceinline__ void load_row(const float* __restrict__ p, float (&out)[V]) {
  if constexpr (V % 4 == 0) {
#pragma unroll
    for (int k = 0; k < V; k += 4) {
      const float4 q = *reinterpret_cast<const float4*>(p + k);
      out[k] = q.x;
      out[k + 1] = q.y;
      out[k + 2] = q.z;
      out[k + 3] = q.w;
    }
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) out[k] = p[k];
  }
}

// kInverse = false: forward; true: backward (the transpose of the rotation). Products and sums use the _rn
// intrinsics so the compiler cannot fuse them into an FMA (ATen rounds each op separately).
template <typename T, int V, bool kInverse>
__global__ void __launch_bounds__(kThreads)
    rope_kernel(const T* x, T* out, const int64_t* __restrict__ positions,
                const float* __restrict__ cos_table, const float* __restrict__ sin_table, int64_t tokens,
                int heads, int half, int64_t ld) {
  const int nchunk = half / V;
  const int unit = int(blockIdx.x) * int(blockDim.x) + int(threadIdx.x);
  if (unit >= heads * nchunk) return;
  const int head = unit / nchunk;
  const int j = (unit - head * nchunk) * V;
  const int64_t D = 2 * int64_t(half);
  const int64_t step = int64_t(gridDim.y) * blockDim.y;
  for (int64_t t = int64_t(blockIdx.y) * blockDim.y + threadIdx.y; t < tokens; t += step) {
    const int64_t p = positions[t];
    float c1[V], c2[V], s1[V], s2[V];
    load_row<V>(cos_table + p * D + j, c1);
    load_row<V>(cos_table + p * D + j + half, c2);
    load_row<V>(sin_table + p * D + j, s1);
    load_row<V>(sin_table + p * D + j + half, s2);
    const int64_t off = t * ld + head * D + j;
    const auto a = detail::load_pack<T, V>(x + off);         // x1 (or dy1)
    const auto b = detail::load_pack<T, V>(x + off + half);  // x2 (or dy2)
    detail::Pack<T, V> o1, o2;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float x1 = to_float(a.v[k]), x2 = to_float(b.v[k]);
      const float C1 = round_to<T>(c1[k]), C2 = round_to<T>(c2[k]);
      const float S1 = round_to<T>(s1[k]), S2 = round_to<T>(s2[k]);
      if constexpr (!kInverse) {
        // out = x*c + cat(-x2, x1)*s
        o1.v[k] = from_float<T>(__fsub_rn(round_to<T>(__fmul_rn(x1, C1)), round_to<T>(__fmul_rn(x2, S1))));
        o2.v[k] = from_float<T>(__fadd_rn(round_to<T>(__fmul_rn(x2, C2)), round_to<T>(__fmul_rn(x1, S2))));
      } else {
        // dx = dy*c + cat(y2, -y1) with y = dy*s
        o1.v[k] = from_float<T>(__fadd_rn(round_to<T>(__fmul_rn(x1, C1)), round_to<T>(__fmul_rn(x2, S2))));
        o2.v[k] = from_float<T>(__fsub_rn(round_to<T>(__fmul_rn(x2, C2)), round_to<T>(__fmul_rn(x1, S1))));
      }
    }
    detail::store_pack<T, V>(out + off, o1);
    detail::store_pack<T, V>(out + off + half, o2);
  }
}

template <typename T, int V, bool kInverse>
void launch_v(const void* x, void* out, const int64_t* positions, const float* cos, const float* sin,
              int64_t tokens, int heads, int half, int64_t ld, cudaStream_t s) {
  const int units = heads * (half / V);
  const int bx = units < kThreads ? units : kThreads;
  const int by = kThreads / bx;
  const int64_t gy = (tokens + by - 1) / by;
  dim3 grid(static_cast<unsigned>((units + bx - 1) / bx),
            static_cast<unsigned>(gy < kMaxGridY ? gy : kMaxGridY));
  rope_kernel<T, V, kInverse><<<grid, dim3(bx, by), 0, s>>>(static_cast<const T*>(x), static_cast<T*>(out),
                                                            positions, cos, sin, tokens, heads, half, ld);
}

template <typename T, bool kInverse>
int launch(const void* x, void* out, const int64_t* positions, const float* cos, const float* sin,
           int64_t tokens, int heads, int half, int64_t ld, cudaStream_t s) {
  constexpr int V = detail::kVec16<T>;
  // 16-byte vectors of x need D/2 and ld to be multiples of V (then every head and half starts aligned);
  // the float32 table rows then start at multiples of 2*V >= 8 floats, so their float4 loads are aligned too.
  const bool vec = half % V == 0 && ld % V == 0 && detail::aligned16(x) && detail::aligned16(out) &&
                   detail::aligned16(cos) && detail::aligned16(sin);
  if (vec)
    launch_v<T, V, kInverse>(x, out, positions, cos, sin, tokens, heads, half, ld, s);
  else
    launch_v<T, 1, kInverse>(x, out, positions, cos, sin, tokens, heads, half, ld, s);
  return static_cast<int>(cudaGetLastError());
}

template <bool kInverse>
int rope(const void* x, void* out, const int64_t* positions, const float* cos, const float* sin,
         int64_t tokens, int64_t heads, int64_t head_dim, int64_t ld, int64_t table_rows, DType dtype,
         void* stream) {
  if (tokens < 0 || heads <= 0 || head_dim <= 0 || head_dim % 2 != 0 || table_rows <= 0 ||
      ld < heads * head_dim)
    return cudaErrorInvalidValue;
  // (head, pair) units of one token are counted in int.
  if (heads * (head_dim / 2) > 0x7fffffff) return cudaErrorInvalidValue;
  if (tokens == 0) return cudaSuccess;
  if (x == nullptr || out == nullptr || positions == nullptr || cos == nullptr || sin == nullptr)
    return cudaErrorInvalidValue;
  auto s = static_cast<cudaStream_t>(stream);
  const int h = static_cast<int>(heads), half = static_cast<int>(head_dim / 2);
  switch (dtype) {
    case DType::f32:
      return launch<float, kInverse>(x, out, positions, cos, sin, tokens, h, half, ld, s);
    case DType::bf16:
      return launch<__nv_bfloat16, kInverse>(x, out, positions, cos, sin, tokens, h, half, ld, s);
  }
  return cudaErrorInvalidValue;
}

}  // namespace

int rope_forward(const void* x, void* out, const int64_t* positions, const float* cos, const float* sin,
                 int64_t tokens, int64_t heads, int64_t head_dim, int64_t ld, int64_t table_rows, DType dtype,
                 void* stream) {
  return rope<false>(x, out, positions, cos, sin, tokens, heads, head_dim, ld, table_rows, dtype, stream);
}

int rope_backward(const void* dy, void* dx, const int64_t* positions, const float* cos, const float* sin,
                  int64_t tokens, int64_t heads, int64_t head_dim, int64_t ld, int64_t table_rows,
                  DType dtype, void* stream) {
  return rope<true>(dy, dx, positions, cos, sin, tokens, heads, head_dim, ld, table_rows, dtype, stream);
}

}  // namespace hs::kernels
