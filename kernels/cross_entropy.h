// Cross-entropy of a chunk of logit rows and its gradient in one kernel (the loss half of the fused
// linear + cross-entropy in src/model/ops_cuda.cpp): per row, in float32, an online max/sum pass gives
// lse = log(sum_j exp(l_j)) and loss = lse - l[target]; a second pass writes the gradient of that loss with
// respect to the logits, softmax - onehot = exp(l_j - lse) - [j == target], rounded once to the logits'
// dtype, over the logits themselves (in place) or into a separate buffer. This is transformers' formula (bf16
// logits, .float(), log_softmax, nll) up to the summation order, and its gradient before the loss scale
// (the caller multiplies d hidden by the scale after the GEMM).
// Memory-bound: the logits are read twice and the gradient written once (6 bytes per bf16 logit), against
// ~42 bytes per logit for the ATen composite (float32 copy, logsumexp, softmax, scatter, cast).
#pragma once

#include <cstdint>

#include "kernels/dtype.h"

namespace hs::kernels {

// logits: [rows, vocab] of `dtype`, row stride ld (elements, >= vocab); targets: int64 [rows] on the device,
// each in [0, vocab) (a row with a target outside gets loss NaN); loss: float32 [rows]; grad: nullptr (loss
// only) or [rows, vocab] with row stride ld, may be logits itself. Returns a cudaError_t value (0 = success).
int cross_entropy_forward_backward(const void* logits, const int64_t* targets, float* loss, void* grad,
                                   int64_t rows, int64_t vocab, int64_t ld, DType dtype, void* stream);

}  // namespace hs::kernels
