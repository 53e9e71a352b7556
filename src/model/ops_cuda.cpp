// The kernel seam: the ops of ops.h that have a project CUDA kernel dispatch to it here, through autograd
// functions that call the kernels' launchers in kernels/ for the forward and the backward pass. The ATen
// composites in ops.cpp stay the reference (CPU, float64 tests) and the fallback: other dtypes, other devices,
// builds without CUDA, and HS_KERNELS=0 in the environment (for A/B runs against the reference).
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "model/ops.h"

#if HS_HAVE_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <vector>

#include "kernels/rms_norm.h"
#endif

namespace hs::model::ops {

bool kernels_enabled() {
#if HS_HAVE_KERNELS
  static const bool enabled = [] {
    const char* v = std::getenv("HS_KERNELS");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return enabled;
#else
  return false;
#endif
}

#if HS_HAVE_KERNELS
namespace {

void check_launch(int code, const char* what) {
  if (code != 0) throw Error(str(what, " failed: ", kernels::error_string(code)));
}

kernels::DType kernel_dtype(at::ScalarType t) {
  return t == at::kBFloat16 ? kernels::DType::bf16 : kernels::DType::f32;
}

// RMSNorm over the last dimension: y = w * round(x * rstd); saves x, w and rstd (float32, one per row).
struct RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& w,
                            double eps) {
    const at::Tensor x = x_in.contiguous();
    const int64_t cols = x.size(-1), rows = x.numel() / cols;
    c10::cuda::CUDAGuard guard(x.device());
    at::Tensor y = at::empty_like(x);
    at::Tensor rstd = at::empty({rows}, x.options().dtype(at::kFloat));
    check_launch(kernels::rms_norm_forward(x.data_ptr(), w.data_ptr(), y.data_ptr(), rstd.data_ptr<float>(), rows,
                                           cols, float(eps), kernel_dtype(x.scalar_type()),
                                           c10::cuda::getCurrentCUDAStream().stream()),
                 "rms_norm_forward");
    ctx->save_for_backward({x, w, rstd});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1], &rstd = saved[2];
    const at::Tensor dy = grads[0].contiguous();
    const int64_t cols = x.size(-1), rows = x.numel() / cols;
    c10::cuda::CUDAGuard guard(x.device());
    const auto stream = c10::cuda::getCurrentCUDAStream().stream();
    const kernels::DType dt = kernel_dtype(x.scalar_type());
    at::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) {
      dx = at::empty_like(x);
      check_launch(kernels::rms_norm_backward_dx(dy.data_ptr(), x.data_ptr(), w.data_ptr(), rstd.data_ptr<float>(),
                                                 dx.data_ptr(), rows, cols, dt, stream),
                   "rms_norm_backward_dx");
    }
    if (ctx->needs_input_grad(1)) {
      at::Tensor partial =
          at::empty({kernels::rms_norm_dw_splits(rows, cols), cols}, x.options().dtype(at::kFloat));
      check_launch(kernels::rms_norm_backward_dw(dy.data_ptr(), x.data_ptr(), rstd.data_ptr<float>(),
                                                 partial.data_ptr<float>(), rows, cols, dt, stream),
                   "rms_norm_backward_dw");
      dw = partial.sum(0).to(w.scalar_type());
    }
    return {dx, dw, at::Tensor()};
  }
};

}  // namespace

bool rms_norm_has_kernel(const at::Tensor& x, const at::Tensor& weight) {
  const auto t = x.scalar_type();
  return kernels_enabled() && x.is_cuda() && (t == at::kFloat || t == at::kBFloat16) && weight.scalar_type() == t &&
         weight.device() == x.device() && weight.dim() == 1 && weight.size(0) == x.size(-1) &&
         weight.is_contiguous() && x.numel() > 0;
}

at::Tensor rms_norm_kernel(const at::Tensor& x, const at::Tensor& weight, double eps) {
  return RmsNormFunction::apply(x, weight, eps);
}
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// LoRA projection with a hand-written backward; see ops.h (lora_linear_fast).
struct LoraLinearFunction : public torch::autograd::Function<LoraLinearFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias,
                            const at::Tensor& a, const at::Tensor& b, double scaling) {
    const int64_t in = x.size(-1), out = w.size(0);
    const at::Tensor x2 = x.reshape({-1, in});
    const at::Tensor a16 = a.to(x.scalar_type()), b16 = b.to(x.scalar_type());
    at::Tensor y = bias.defined() ? at::addmm(bias, x2, w.t()) : at::mm(x2, w.t());
    const at::Tensor xa = at::mm(x2, a16.t());  // [N, r]
    y.addmm_(xa, b16.t(), /*beta=*/1.0, /*alpha=*/scaling);
    ctx->save_for_backward({x2, w, a16, b16, xa});
    ctx->saved_data["scaling"] = scaling;
    ctx->saved_data["a_dtype"] = a.scalar_type();
    ctx->saved_data["b_dtype"] = b.scalar_type();
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = out;
    return y.view(shape);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x2 = saved[0], &w = saved[1], &a16 = saved[2], &b16 = saved[3], &xa = saved[4];
    const double s = ctx->saved_data["scaling"].toDouble();
    const at::Tensor g = grads[0].reshape({-1, w.size(0)});
    const at::Tensor gb = at::mm(g, b16);  // [N, r]
    at::Tensor dx, da, db;
    if (ctx->needs_input_grad(0)) {
      dx = at::mm(g, w);
      dx.addmm_(gb, a16, /*beta=*/1.0, /*alpha=*/s);
      std::vector<int64_t> shape(grads[0].sizes().begin(), grads[0].sizes().end());
      shape.back() = w.size(1);
      dx = dx.view(shape);
    }
    if (ctx->needs_input_grad(3))
      da = at::mm(gb.t(), x2, at::kFloat).mul_(s).to(ctx->saved_data["a_dtype"].toScalarType());
    if (ctx->needs_input_grad(4))
      db = at::mm(g.t(), xa, at::kFloat).mul_(s).to(ctx->saved_data["b_dtype"].toScalarType());
    return {dx, at::Tensor(), at::Tensor(), da, db, at::Tensor()};
  }
};

// Rows per chunk of the fused head + loss: at most 2^27 logits (bf16 and float32 copies: 768 MiB).
int64_t ce_chunk_rows(int64_t vocab) { return std::max<int64_t>(1, (int64_t(1) << 27) / std::max<int64_t>(1, vocab)); }

// Head + cross-entropy with the gradient made in the forward pass, a chunk of rows at a time; see ops.h.
struct LinearCrossEntropyFunction : public torch::autograd::Function<LinearCrossEntropyFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                            const at::Tensor& targets) {
    const bool need_dh = hidden.requires_grad(), need_dw = weight.requires_grad();
    const int64_t n = hidden.size(0), vocab = weight.size(0), step = ce_chunk_rows(vocab);
    const at::Tensor t = targets.to(at::kLong).view({-1, 1});
    at::Tensor dh = need_dh ? at::empty_like(hidden) : at::Tensor();
    at::Tensor dw = need_dw ? at::zeros(weight.sizes(), weight.options().dtype(at::kFloat)) : at::Tensor();
    at::Tensor loss = at::zeros({}, hidden.options().dtype(at::kFloat));
    for (int64_t begin = 0; begin < n; begin += step) {
      const int64_t end = std::min(n, begin + step);
      const at::Tensor h = hidden.slice(0, begin, end), tc = t.slice(0, begin, end);
      at::Tensor logits = at::mm(h, weight.t()).to(at::kFloat);  // bf16 GEMM, as HF's lm_head, then float32
      const at::Tensor lse = at::logsumexp(logits, 1, /*keepdim=*/true);
      loss.add_((lse - logits.gather(1, tc)).sum());
      if (!need_dh && !need_dw) continue;
      logits.sub_(lse).exp_();  // softmax
      logits.scatter_add_(1, tc, at::full({end - begin, 1}, -1.0f, logits.options()));
      const at::Tensor grad = logits.to(hidden.scalar_type());
      if (need_dh) {
        at::Tensor dh_c = dh.slice(0, begin, end);
        at::mm_out(dh_c, grad, weight);
      }
      if (need_dw) dw.add_(at::mm(grad.t(), h, at::kFloat));
    }
    ctx->save_for_backward({dh, dw});
    ctx->saved_data["w_dtype"] = weight.scalar_type();
    return loss;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &dh = saved[0], &dw = saved[1];
    const at::Tensor go = grads[0];
    // Scaled in float32 (a bf16 copy of the scale would round it), then rounded once.
    at::Tensor gh = dh.defined() ? (dh.to(at::kFloat) * go).to(dh.scalar_type()) : at::Tensor();
    at::Tensor gw = dw.defined() ? (dw * go).to(ctx->saved_data["w_dtype"].toScalarType()) : at::Tensor();
    return {gh, gw, at::Tensor()};
  }
};

}  // namespace

bool lora_linear_has_fast_path(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& a,
                               const at::Tensor& b, double dropout_p, bool training) {
  return kernels_enabled() && at::GradMode::is_enabled() && (a.requires_grad() || b.requires_grad()) && x.is_cuda() &&
         x.scalar_type() == at::kBFloat16 && weight.scalar_type() == at::kBFloat16 && !weight.requires_grad() &&
         (dropout_p == 0 || !training) && x.numel() > 0;
}

at::Tensor lora_linear_fast(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& a,
                            const at::Tensor& b, double scaling) {
  return LoraLinearFunction::apply(x, weight, bias, a, b, scaling);
}

bool linear_cross_entropy_has_fast_path(const at::Tensor& hidden, const at::Tensor& weight) {
  return kernels_enabled() && at::GradMode::is_enabled() && hidden.is_cuda() &&
         hidden.scalar_type() == at::kBFloat16 && weight.scalar_type() == at::kBFloat16 && hidden.size(0) > 0;
}

LossSum linear_cross_entropy_fast(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets) {
  LossSum out;
  out.sum = LinearCrossEntropyFunction::apply(hidden.contiguous(), weight, targets);
  out.count = targets.size(0);
  return out;
}
#else
bool lora_linear_has_fast_path(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double,
                               bool) {
  return false;
}
at::Tensor lora_linear_fast(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const at::Tensor&, double) {
  throw Error("this build has no CUDA kernels").hint("configure with -DHS_CUDA=ON");
}
bool linear_cross_entropy_has_fast_path(const at::Tensor&, const at::Tensor&) { return false; }
LossSum linear_cross_entropy_fast(const at::Tensor&, const at::Tensor&, const at::Tensor&) {
  throw Error("this build has no CUDA kernels").hint("configure with -DHS_CUDA=ON");
}
bool rms_norm_has_kernel(const at::Tensor&, const at::Tensor&) { return false; }
at::Tensor rms_norm_kernel(const at::Tensor&, const at::Tensor&, double) {
  throw Error("this build has no CUDA kernels").hint("configure with -DHS_CUDA=ON");
}
#endif

}  // namespace hs::model::ops
