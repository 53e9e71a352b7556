// Nf4Linear and the NF4 projection factory (see nf4_linear.h). The forward is ops::linear on the
// dequantized weight, the arithmetic transformers + bitsandbytes run on the CPU (dequantize_4bit, then
// F.linear in the activations' dtype). Under autograd one custom function keeps the dequantized weight
// out of the graph: it saves the NF4 tensors (already held by the module, so no extra memory) and
// dequantizes again in the backward for dX = dY W, instead of letting at::linear save a dense [out, in]
// copy per projection until the backward runs.
#include "quant/nf4_linear.h"

#include <torch/csrc/autograd/custom_function.h>

#include "core/error.h"
#include "core/log.h"
#include "io/safetensors.h"
#include "model/ops.h"
#include "model/tensor_io.h"

namespace hs::quant {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The NF4 tensor a function call saved, rebuilt for the backward.
Nf4Tensor restore(AutogradContext* ctx, const variable_list& saved) {
  Nf4Tensor q;
  q.packed = saved[0];
  q.absmax = saved[1];
  q.code = saved[2];
  q.nested_absmax = saved[3];
  q.nested_code = saved[4];
  q.shape = ctx->saved_data["shape"].toIntVector();
  q.dtype = ctx->saved_data["dtype"].toScalarType();
  q.offset = float(ctx->saved_data["offset"].toDouble());
  q.blocksize = ctx->saved_data["blocksize"].toInt();
  q.nested_blocksize = ctx->saved_data["nested_blocksize"].toInt();
  return q;
}

// y = x W^T + b with W = dequantize(q) made in the forward and again in the backward (dX only: the base and
// its bias are frozen).
struct Nf4LinearFunction : public torch::autograd::Function<Nf4LinearFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& bias,
                            const at::Tensor& packed, const at::Tensor& absmax, const at::Tensor& code,
                            const at::Tensor& nested_absmax, const at::Tensor& nested_code,
                            const Nf4Tensor* q) {
    ctx->save_for_backward({packed, absmax, code, nested_absmax, nested_code});
    ctx->saved_data["shape"] = q->shape;
    ctx->saved_data["dtype"] = q->dtype;
    ctx->saved_data["offset"] = double(q->offset);
    ctx->saved_data["blocksize"] = q->blocksize;
    ctx->saved_data["nested_blocksize"] = q->nested_blocksize;
    at::Tensor w = dequantize_nf4(*q);
    if (w.scalar_type() != x.scalar_type()) w = w.to(x.scalar_type());
    return model::ops::linear(x, w, bias.numel() > 0 ? bias : at::Tensor());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    at::Tensor dx;
    if (ctx->needs_input_grad(0)) {
      const Nf4Tensor q = restore(ctx, ctx->get_saved_variables());
      at::Tensor w = dequantize_nf4(q);
      if (w.scalar_type() != grads[0].scalar_type()) w = w.to(grads[0].scalar_type());
      dx = at::matmul(grads[0], w);
    }
    return {dx,           at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// The tensors of transformers' pre-quantized layout besides the packed weight itself (see quant/nf4.h).
constexpr const char* kNf4Suffixes[] = {".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map",
                                        ".quant_state.bitsandbytes__nf4"};

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

Nf4Linear::Nf4Linear(Nf4Tensor weight, at::Tensor bias) : weight_(std::move(weight)), bias_(std::move(bias)) {
  HS_CHECK(weight_.shape.size() == 2, "an NF4 projection weight must be 2-D");
  HS_CHECK(!bias_.defined() || (bias_.dim() == 1 && bias_.size(0) == weight_.shape[0]),
           "NF4 projection bias does not fit the weight");
  if (bias_.defined()) bias_.requires_grad_(false);
}

at::Tensor Nf4Linear::dequantized() const { return dequantize_nf4(weight_); }

at::Tensor Nf4Linear::forward(const at::Tensor& x, bool) const {
  if (at::GradMode::is_enabled() && x.requires_grad()) {
    const at::Tensor b = bias_.defined() ? bias_ : at::empty({0}, x.options());
    return Nf4LinearFunction::apply(x, b, weight_.packed, weight_.absmax, weight_.code, weight_.nested_absmax,
                                    weight_.nested_code, &weight_);
  }
  at::Tensor w = dequantized();
  if (w.scalar_type() != x.scalar_type()) w = w.to(x.scalar_type());
  return model::ops::linear(x, w, bias_);
}

const Nf4Linear* as_nf4(const model::Projection& projection) {
  return dynamic_cast<const Nf4Linear*>(&projection);
}

model::ProjectionFactory nf4_projection_factory() {
  return [](const model::ProjectionSource& s) -> std::shared_ptr<model::Projection> {
    const io::Checkpoint& ck = *s.checkpoint;
    Nf4Tensor q;
    if (has_nf4(ck, s.weight_name)) {
      q = read_nf4(ck, s.weight_name, s.device);
      if (q.shape != s.shape)
        throw Error(str("NF4 tensor '", s.weight_name, "' has shape ", shape_str(q.shape),
                        " (its quant_state) but config.json implies ", shape_str(s.shape)))
            .at(ck.source())
            .hint("config.json and the weights do not belong together");
      s.mark_used(s.weight_name);
      for (const char* suffix : kNf4Suffixes)
        if (ck.contains(s.weight_name + suffix)) s.mark_used(s.weight_name + suffix);
    } else {
      at::Tensor w = s.load_weight();
      q = quantize_nf4(w);
    }
    return std::make_shared<Nf4Linear>(std::move(q), s.load_bias());
  };
}

model::LoadOptions nf4_load_options(model::LoadOptions options, const io::HfConfig& config, bool quantize) {
  if (config.quantization.nf4) {
    log::info(
        "NF4: ", config.source,
        " is pre-quantized (bitsandbytes 4-bit NF4, double quantization); reading its 4-bit projections");
  } else if (quantize) {
    log::info(
        "NF4: quantizing the seven projections of every layer at load (bitsandbytes NF4, blocksize 64, "
        "double quantization); embeddings, norms and lm_head stay ",
        model::scalar_type_name(options.dtype));
  } else {
    return options;
  }
  options.projection_factory = nf4_projection_factory();
  return options;
}

int64_t nf4_bytes(const model::Model& model) {
  int64_t total = 0;
  for (int i = 0; i < model.num_layers(); ++i)
    for (const auto& p : model.layer(i).proj)
      if (const Nf4Linear* q = as_nf4(*p)) total += q->weight().bytes();
  return total;
}

}  // namespace hs::quant
