// RMSNorm forward on the GPU behind a plain launcher (raw pointers, no LibTorch types), with HF
// LlamaRMSNorm's exact rounding order: in float32, n = x * rsqrt(mean(x^2) + eps); n is cast to the input
// dtype, then multiplied by the weight (in the weight's dtype, i.e. rounded once more for bf16).
// One block per row; float32 accumulation; optional per-row rstd output for the backward pass.
// Backward: the gradient of that same formula, in its rounding order (autograd on HF's bf16 code rounds
// g = dy * w to the input dtype before it flows into the float32 normalisation):
//   g  = round(dy * w);  dx = round(rstd * g - x * rstd^3 * mean(g * x))   (g, x in float32)
//   dw = sum over rows of dy * round(x * rstd)                             (float32 partial sums)
// dx: one block per row. dw: column tiles of 32 x 8 threads over `splits` row ranges, written as float32
// partials [splits, cols] (coalesced, no atomics) that the caller sums; rms_norm_dw_splits() picks splits.
#pragma once

#include <cstdint>

#include "kernels/dtype.h"

namespace hs::kernels {

// x, y: [rows, cols] contiguous, w: [cols]; all of `dtype`. rstd: [rows] float32 or nullptr.
// stream: a cudaStream_t (nullptr = default stream). Returns a cudaError_t value (0 = success).
int rms_norm_forward(const void* x, const void* w, void* y, float* rstd, int64_t rows, int64_t cols, float eps,
                     DType dtype, void* stream);

// dy, x, dx: [rows, cols]; w: [cols] (all of `dtype`); rstd: [rows] float32 from the forward pass.
int rms_norm_backward_dx(const void* dy, const void* x, const void* w, const float* rstd, void* dx, int64_t rows,
                         int64_t cols, DType dtype, void* stream);
// Row ranges for the dw partial sums (>= 1, <= rows).
int64_t rms_norm_dw_splits(int64_t rows, int64_t cols);
// dw_partial: [splits, cols] float32 with splits = rms_norm_dw_splits(rows, cols).
int rms_norm_backward_dw(const void* dy, const void* x, const float* rstd, float* dw_partial, int64_t rows,
                         int64_t cols, DType dtype, void* stream);

// Message for a code returned by a launcher.
const char* error_string(int code);

}  // namespace hs::kernels
