// AdamW (see adamw.h): PyTorch's single-tensor arithmetic op for op on the flat fp32 master, so a step is
// bit-identical to torch.optim.AdamW(foreach=False); the moments live beside the master on its device.
#include "train/adamw.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace hs::train {

AdamW::AdamW(at::Tensor params, AdamWConfig config, at::Tensor decay_mask, int64_t step_chunk)
    : params_(std::move(params)), decay_mask_(std::move(decay_mask)), config_(config), step_chunk_(step_chunk) {
  HS_CHECK(step_chunk_ > 0, "AdamW: step_chunk must be positive");
  HS_CHECK(params_.dim() == 1 && params_.is_contiguous() && params_.scalar_type() == at::kFloat,
           "AdamW expects a flat contiguous float32 parameter buffer");
  HS_CHECK(!decay_mask_.defined() || decay_mask_.sizes() == params_.sizes(), "decay mask size mismatch");
  exp_avg_ = at::zeros_like(params_);
  exp_avg_sq_ = at::zeros_like(params_);
}

void AdamW::step(const at::Tensor& grad, double lr) {
  HS_CHECK(grad.sizes() == params_.sizes() && grad.scalar_type() == at::kFloat,
           "AdamW: gradient buffer mismatch");
  at::NoGradGuard no_grad;
  ++steps_;
  const double b1 = config_.beta1, b2 = config_.beta2;
  const double bias_correction1 = 1 - std::pow(b1, double(steps_));
  const double bias_correction2 = 1 - std::pow(b2, double(steps_));
  const double step_size = lr / bias_correction1;
  const double bias_correction2_sqrt = std::pow(bias_correction2, 0.5);
  // Element-wise, so a chunk at a time gives the same bits as the whole buffer at once; the temporaries
  // (sqrt(v), the denominator, the decay factors) are then at most step_chunk_ values, not one per parameter
  // (30 GiB for a ZeRO-1 shard of an 8B model).
  const int64_t n = params_.numel();
  for (int64_t off = 0; off < n; off += step_chunk_) {
    const int64_t len = std::min(step_chunk_, n - off);
    at::Tensor p = params_.narrow(0, off, len), m = exp_avg_.narrow(0, off, len),
               v = exp_avg_sq_.narrow(0, off, len);
    const at::Tensor g = grad.narrow(0, off, len);
    if (config_.weight_decay != 0) {
      if (decay_mask_.defined())
        p.mul_(1 - lr * config_.weight_decay * decay_mask_.narrow(0, off, len));
      else
        p.mul_(1 - lr * config_.weight_decay);
    }
    m.lerp_(g, 1 - b1);
    v.mul_(b2).addcmul_(g, g, 1 - b2);
    at::Tensor denom = (v.sqrt() / bias_correction2_sqrt).add_(config_.eps);
    p.addcdiv_(m, denom, -step_size);
  }
}

void AdamW::load_state(int64_t steps, const at::Tensor& exp_avg, const at::Tensor& exp_avg_sq) {
  if (exp_avg.sizes() != params_.sizes() || exp_avg_sq.sizes() != params_.sizes())
    throw Error(hs::str("optimizer state has ", exp_avg.numel(), " values, the model's trainable parameters ",
                        params_.numel()))
        .hint("the checkpoint was made with other LoRA settings (lora.r / lora.targets) or another model");
  at::NoGradGuard no_grad;
  exp_avg_.copy_(exp_avg);
  exp_avg_sq_.copy_(exp_avg_sq);
  steps_ = steps;
}

}  // namespace hs::train
