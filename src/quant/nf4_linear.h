// A frozen projection whose weight is stored NF4 (quant/nf4.h): the QLoRA base. forward() dequantizes the
// weight into a temporary in the activations' dtype and runs ops::linear with it, so a layer holds one
// dequantized weight at a time; under autograd the backward dequantizes again for dX (nothing but the NF4
// tensors is saved, and the base gets no gradient). LoRA wraps it like any model::Projection.
//
// The model learns about NF4 only through model::LoadOptions::projection_factory: nf4_projection_factory()
// reads a projection from transformers' pre-quantized layout when the checkpoint has it, and otherwise
// quantizes the dense weight at load (bitsandbytes' quantize_4bit, in the run dtype as loaded).
#pragma once

#include <memory>
#include <string>

#include <ATen/ATen.h>

#include "io/hf_config.h"
#include "model/linear.h"
#include "model/model.h"
#include "quant/nf4.h"

namespace hs::quant {

class Nf4Linear final : public model::Projection {
 public:
  // `weight`: the NF4 [out, in] weight; `bias`: [out] or undefined (kept dense, frozen).
  Nf4Linear(Nf4Tensor weight, at::Tensor bias);
  at::Tensor forward(const at::Tensor& x, bool training) const override;
  int64_t in_features() const override { return weight_.shape.at(1); }
  int64_t out_features() const override { return weight_.shape.at(0); }
  // The dequantized weight [out, in] in the NF4 tensor's dtype (bitsandbytes' dequantize_4bit exactly).
  at::Tensor dequantized() const;
  const model::Projection* packed_base() const override { return this; }
  at::Tensor unpack_weight() const override { return dequantized(); }
  void unpack_weight_into(at::Tensor& out) const override { dequantize_nf4_into(weight_, out); }
  at::Tensor packed_bias() const override { return bias_; }
  const Nf4Tensor& weight() const { return weight_; }
  const at::Tensor& bias() const { return bias_; }

 private:
  Nf4Tensor weight_;
  at::Tensor bias_;
};

// The projection as an Nf4Linear; nullptr when it is not one (a LoRA wrapper: ask its base()).
const Nf4Linear* as_nf4(const model::Projection& projection);

// The LoadOptions factory building an Nf4Linear for each projection: from the checkpoint's NF4 tensors
// (quant::has_nf4 / read_nf4, their shape checked against config.json) when it has them, else by quantizing
// the dense weight (loaded in the run dtype on the run device, then freed).
model::ProjectionFactory nf4_projection_factory();

// `options` with the NF4 factory when `quantize` is asked (--quant nf4, finetune = qlora) or the folder is
// pre-quantized (config.json's quantization_config: it is what the folder is); logs which. Unchanged
// otherwise.
model::LoadOptions nf4_load_options(model::LoadOptions options, const io::HfConfig& config, bool quantize);

// Bytes the NF4 projections of `model` hold on their device (packed codes and statistics); call it before
// LoRA wraps them.
int64_t nf4_bytes(const model::Model& model);

}  // namespace hs::quant
