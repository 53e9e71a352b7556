// Rotary position embedding (HF rotate_half convention) forward and backward on the GPU behind plain
// launchers, in place or out of place, with the exact rounding points of HF's eager code under autograd
// (float32 math inside; round() = cast to x's dtype, identity for f32). Per token t, head, and pair
// j < D/2 (x1 = x[j], x2 = x[j + D/2]), with c = round(cos[pos[t]]), s = round(sin[pos[t]]) (HF casts its
// float32 cos/sin to x's dtype before use):
//   forward  (out = x*c + rotate_half(x)*s, rotate_half(x) = cat(-x2, x1)):
//     out1 = round(round(x1*c[j]) - round(x2*s[j]));    out2 = round(round(x2*c[j+D/2]) + round(x1*s[j+D/2]))
//   backward (dx = dy*c + rotate_half^T(dy*s), rotate_half^T(y) = cat(y2, -y1)):
//     dx1 = round(round(dy1*c[j]) + round(dy2*s[j+D/2]));  dx2 = round(round(dy2*c[j+D/2]) - round(dy1*s[j]))
// (with HF's tables, cos/sin = cat(freqs, freqs), so s[j] == s[j+D/2] and the backward is the forward with
// -sin). Products and sums are separately rounded (no fused multiply-add), so float32 also matches ATen bit
// for bit. Backward needs only the positions, so q/k can be rotated in place without being saved.
#pragma once

#include <cstdint>

#include "kernels/dtype.h"

namespace hs::kernels {

// x, out: [tokens, heads, head_dim] of `dtype`; a token's heads*head_dim elements are contiguous, tokens are
// ld elements apart (ld >= heads*head_dim). out may be x (in place); no other overlap. positions: int64
// [tokens] on the device; the CALLER guarantees 0 <= positions[t] < table_rows (not checked on the device).
// cos, sin: float32 [table_rows, head_dim], contiguous. head_dim must be even. stream: a cudaStream_t
// (nullptr = default stream). Returns a cudaError_t value (0 = success; error_string() in rms_norm.h).
int rope_forward(const void* x, void* out, const int64_t* positions, const float* cos, const float* sin,
                 int64_t tokens, int64_t heads, int64_t head_dim, int64_t ld, int64_t table_rows, DType dtype,
                 void* stream);

// dy, dx: as x, out above (dx may be dy: in place); the same positions and tables as the forward pass.
int rope_backward(const void* dy, void* dx, const int64_t* positions, const float* cos, const float* sin,
                  int64_t tokens, int64_t heads, int64_t head_dim, int64_t ld, int64_t table_rows,
                  DType dtype, void* stream);

}  // namespace hs::kernels
