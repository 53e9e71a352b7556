// AdamW over one flat fp32 buffer: all trainable parameters (fp32 master copies) live in one contiguous
// tensor, their gradients in another of the same size, so a step is a handful of vectorized ATen ops
// whatever the number of LoRA tensors, and the gradient all-reduce is one call. The arithmetic is
// PyTorch's single-tensor AdamW (torch.optim.AdamW, foreach=False) op for op, so results are bit-identical
// to it on the same inputs (tested against it). A decay mask selects where weight decay applies.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace hs::train {

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

class AdamW {
 public:
  // params: 1-D contiguous float32 (updated in place). decay_mask: empty (decay everywhere) or a float32
  // tensor like params holding 1 where weight decay applies and 0 elsewhere.
  // step_chunk: how many values one step updates at a time (element-wise: any chunk gives the same bits; it
  // bounds the step's temporaries).
  static constexpr int64_t kStepChunk = int64_t(1) << 26;
  AdamW(at::Tensor params, AdamWConfig config, at::Tensor decay_mask = {}, int64_t step_chunk = kStepChunk);

  // One optimizer step with learning rate `lr` and gradient `grad` (like params).
  void step(const at::Tensor& grad, double lr);

  int64_t steps() const { return steps_; }
  const at::Tensor& exp_avg() const { return exp_avg_; }
  const at::Tensor& exp_avg_sq() const { return exp_avg_sq_; }
  const AdamWConfig& config() const { return config_; }
  // Restores the state of a checkpoint (shapes must match; throws hs::Error otherwise).
  void load_state(int64_t steps, const at::Tensor& exp_avg, const at::Tensor& exp_avg_sq);

 private:
  at::Tensor params_, exp_avg_, exp_avg_sq_, decay_mask_;
  AdamWConfig config_;
  int64_t steps_ = 0, step_chunk_ = kStepChunk;
};

}  // namespace hs::train
