// A projection of the decoder as an interface, so adapters wrap the frozen base instead of forking the
// model: DenseLinear is the plain base (W, optional b); hs::lora::LoraLinear wraps any Projection and adds
// its low-rank branch; a quantized base (NF4) is another implementation. The model only calls forward().
#pragma once

#include <memory>
#include <optional>

#include <ATen/ATen.h>

namespace hs::model {

// A low-rank branch added to a projection (LoRA): y += scaling * (dropout(x) A^T) B^T.
struct LowRank {
  at::Tensor a;  // [r, in]
  at::Tensor b;  // [out, r]
  double scaling = 1, dropout = 0;
};

class Projection {
 public:
  virtual ~Projection() = default;
  virtual at::Tensor forward(const at::Tensor& x, bool training) const = 0;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  // The dense base weights underneath (this, or the base a wrapper holds); nullptr for non-dense bases.
  virtual const class DenseLinear* dense() const { return nullptr; }
  // The low-rank branch this projection adds, if any (fused blocks read it to run base + branch together).
  virtual std::optional<LowRank> low_rank() const { return std::nullopt; }
  // Bases stored packed (NF4: quant::Nf4Linear) make their frozen weight dense on demand. packed_base() is
  // that projection (this, or the base a wrapper holds; nullptr for every other base); on it,
  // unpack_weight() makes its [out, in] weight as a new tensor (a temporary: the fast path calls it in the
  // forward pass and again in the backward instead of saving it) and packed_bias() gives its bias or an
  // undefined tensor.
  virtual const Projection* packed_base() const { return nullptr; }
  virtual at::Tensor unpack_weight() const { return at::Tensor(); }
  // unpack_weight() written into `out` (contiguous, [out, in] elements, any float dtype; a row slice of a
  // wider buffer is fine): the values of unpack_weight().to(out's dtype). Fused blocks unpack q|k|v and
  // gate|up this way straight into one buffer instead of concatenating temporaries.
  virtual void unpack_weight_into(at::Tensor& out) const { out.copy_(unpack_weight().reshape(out.sizes())); }
  virtual at::Tensor packed_bias() const { return at::Tensor(); }
};

class DenseLinear final : public Projection {
 public:
  DenseLinear(at::Tensor weight, at::Tensor bias) : weight(std::move(weight)), bias(std::move(bias)) {}
  at::Tensor forward(const at::Tensor& x, bool training) const override;
  int64_t in_features() const override { return weight.size(1); }
  int64_t out_features() const override { return weight.size(0); }
  const DenseLinear* dense() const override { return this; }

  at::Tensor weight;  // [out, in]
  at::Tensor bias;    // [out] or undefined
};

}  // namespace hs::model
