// RMSNorm forward on the GPU behind a plain launcher (raw pointers, no LibTorch types), with HF
// LlamaRMSNorm's exact rounding order: in float32, n = x * rsqrt(mean(x^2) + eps); n is cast to the input
// dtype, then multiplied by the weight (in the weight's dtype, i.e. rounded once more for bf16).
// One block per row; float32 accumulation; optional per-row rstd output for the backward pass.
#pragma once

#include <cstdint>

namespace hs::kernels {

enum class DType : int { f32 = 0, bf16 = 1 };

// x, y: [rows, cols] contiguous, w: [cols]; all of `dtype`. rstd: [rows] float32 or nullptr.
// stream: a cudaStream_t (nullptr = default stream). Returns a cudaError_t value (0 = success).
int rms_norm_forward(const void* x, const void* w, void* y, float* rstd, int64_t rows, int64_t cols, float eps,
                     DType dtype, void* stream);

// Message for a code returned by a launcher.
const char* error_string(int code);

}  // namespace hs::kernels
