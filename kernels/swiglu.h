// SwiGLU (LlamaMLP's act_fn(gate) * up with act_fn = SiLU) forward and backward on the GPU behind plain
// launchers (raw pointers, no LibTorch types), with the exact rounding points of HF's eager code under
// autograd in the activation dtype (float32 math inside; round() = cast to the dtype, identity for f32):
//   forward:  s = round(silu(g)) with silu(g) = g / (1 + exp(-g));   h = round(s * u)
//   backward: ds = round(dh * u);  du = round(dh * s)  (s recomputed as above, not saved);
//             dg = round(ds * sig * (1 + g * (1 - sig))), sig = 1 / (1 + exp(-g))  (ATen's silu_backward)
// g and u may be the two halves of one [rows, 2*cols] tensor (gate | up, as a fused gate/up GEMM writes
// them): both use the row stride ld_gu; dg and du likewise share ld_dgu. Memory-bound: 16-byte vector loads
// when every pointer is 16-byte aligned and every row stride is a multiple of 16 bytes (a scalar tail handles
// cols not a multiple of the vector width), scalar loads otherwise.
#pragma once

#include <cstdint>

#include "kernels/dtype.h"

namespace hs::kernels {

// g, u: [rows, cols] with row stride ld_gu (elements); h: [rows, cols] with row stride ld_h; all of `dtype`.
// h may be g or u itself (in place) when ld_h == ld_gu; no other overlap. stream: a cudaStream_t (nullptr =
// default stream). Returns a cudaError_t value (0 = success; error_string() in rms_norm.h names it).
int swiglu_forward(const void* g, const void* u, void* h, int64_t rows, int64_t cols, int64_t ld_gu,
                   int64_t ld_h, DType dtype, void* stream);

// dh: [rows, cols], row stride ld_dh; g, u as in the forward pass (row stride ld_gu); dg, du: [rows, cols]
// with row stride ld_dgu (may be the two halves of one [rows, 2*cols] buffer). In place is allowed: dg == g
// and du == u when ld_dgu == ld_gu (each element is read before it is written, by the same thread); dg (or du)
// may also be dh itself when ld_dgu == ld_dh. No other overlap.
int swiglu_backward(const void* dh, const void* g, const void* u, void* dg, void* du, int64_t rows,
                    int64_t cols, int64_t ld_gu, int64_t ld_dh, int64_t ld_dgu, DType dtype, void* stream);

// swiglu_backward that also writes the forward's h = round(round(silu(g)) * u) (bit for bit what
// swiglu_forward writes) into h (row stride ld_h; nullptr = not written; no overlap with the others) from the
// g and u it reads anyway: a backward that needs h (the down projection's LoRA gradient) gets it without
// reading g and u a second time.
int swiglu_backward_h(const void* dh, const void* g, const void* u, void* dg, void* du, void* h, int64_t rows,
                      int64_t cols, int64_t ld_gu, int64_t ld_dh, int64_t ld_dgu, int64_t ld_h, DType dtype,
                      void* stream);

}  // namespace hs::kernels
