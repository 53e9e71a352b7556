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
    at::Tensor y = bias.numel() > 0 ? at::addmm(bias, x2, w.t()) : at::mm(x2, w.t());
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

// The LoRA SwiGLU MLP as one function; see ops.h (lora_mlp_fast). Inputs: x, then per projection (gate, up,
// down) its frozen weight and LoRA A, B; scalings as doubles.
struct LoraMlpFunction : public torch::autograd::Function<LoraMlpFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& wg, const at::Tensor& ag,
                            const at::Tensor& bg, const at::Tensor& wu, const at::Tensor& au, const at::Tensor& bu,
                            const at::Tensor& wd, const at::Tensor& ad, const at::Tensor& bd, double sg, double su,
                            double sd) {
    const auto dt = x.scalar_type();
    const at::Tensor x2 = x.reshape({-1, x.size(-1)});
    const at::Tensor ag16 = ag.to(dt), bg16 = bg.to(dt), au16 = au.to(dt), bu16 = bu.to(dt), ad16 = ad.to(dt),
                     bd16 = bd.to(dt);
    at::Tensor g = at::mm(x2, wg.t()), u = at::mm(x2, wu.t());
    const at::Tensor xag = at::mm(x2, ag16.t()), xau = at::mm(x2, au16.t());
    g.addmm_(xag, bg16.t(), 1.0, sg);
    u.addmm_(xau, bu16.t(), 1.0, su);
    at::Tensor h = at::silu(g).mul_(u);
    at::Tensor y = at::mm(h, wd.t());
    const at::Tensor ha = at::mm(h, ad16.t());
    y.addmm_(ha, bd16.t(), 1.0, sd);
    ctx->save_for_backward({x2, wg, wu, wd, ag16, bg16, au16, bu16, ad16, bd16, g, u, xag, xau, ha});
    ctx->saved_data["s"] = std::vector<double>{sg, su, sd};
    ctx->saved_data["dtypes"] = std::vector<int64_t>{int64_t(ag.scalar_type()), int64_t(bg.scalar_type()),
                                                     int64_t(au.scalar_type()), int64_t(bu.scalar_type()),
                                                     int64_t(ad.scalar_type()), int64_t(bd.scalar_type())};
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = wd.size(0);
    return y.view(shape);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto v = ctx->get_saved_variables();
    const at::Tensor &x2 = v[0], &wg = v[1], &wu = v[2], &wd = v[3], &ag16 = v[4], &bg16 = v[5], &au16 = v[6],
                     &bu16 = v[7], &ad16 = v[8], &bd16 = v[9], &g = v[10], &u = v[11], &xag = v[12], &xau = v[13],
                     &ha = v[14];
    const auto s = ctx->saved_data["s"].toDoubleVector();
    const double sg = s[0], su = s[1], sd = s[2];
    const at::Tensor dy = grads[0].reshape({-1, wd.size(0)});
    at::Tensor dad, dbd, dh;
    {
      const at::Tensor h = at::silu(g).mul_(u);  // recomputed, same roundings as the forward
      const at::Tensor gbd = at::mm(dy, bd16);
      dh = at::mm(dy, wd);
      dh.addmm_(gbd, ad16, 1.0, sd);
      dad = at::mm(gbd.t(), h, at::kFloat).mul_(sd);
      dbd = at::mm(dy.t(), ha, at::kFloat).mul_(sd);
    }
    // transformers' SwiGLU under autograd: d up = dh * silu(g); d silu = dh * up; d gate = silu'(g) d silu.
    const at::Tensor du = at::silu(g).mul_(dh);
    const at::Tensor dg = at::silu_backward(dh.mul_(u), g);
    dh = at::Tensor();
    const at::Tensor gbg = at::mm(dg, bg16), gbu = at::mm(du, bu16);
    at::Tensor dx;
    if (ctx->needs_input_grad(0)) {
      dx = at::mm(dg, wg);
      dx.addmm_(du, wu);
      dx.addmm_(gbg, ag16, 1.0, sg);
      dx.addmm_(gbu, au16, 1.0, su);
      std::vector<int64_t> shape(grads[0].sizes().begin(), grads[0].sizes().end());
      shape.back() = wg.size(1);
      dx = dx.view(shape);
    }
    at::Tensor dag = at::mm(gbg.t(), x2, at::kFloat).mul_(sg), dbg = at::mm(dg.t(), xag, at::kFloat).mul_(sg);
    at::Tensor dau = at::mm(gbu.t(), x2, at::kFloat).mul_(su), dbu = at::mm(du.t(), xau, at::kFloat).mul_(su);
    const auto dts = ctx->saved_data["dtypes"].toIntVector();
    auto as = [&](at::Tensor& t, int i) { t = t.to(at::ScalarType(dts[size_t(i)])); };
    as(dag, 0), as(dbg, 1), as(dau, 2), as(dbu, 3), as(dad, 4), as(dbd, 5);
    return {dx, at::Tensor(), dag, dbg, at::Tensor(), dau, dbu, at::Tensor(), dad, dbd, at::Tensor(), at::Tensor(),
            at::Tensor()};
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
  // Autograd functions take defined tensors only: no bias is an empty one.
  return LoraLinearFunction::apply(x, weight, bias.defined() ? bias : at::empty({0}, weight.options()), a, b,
                                   scaling);
}

bool lora_mlp_has_fast_path(const at::Tensor& x, const LoraProj& gate, const LoraProj& up, const LoraProj& down,
                            bool training) {
  for (const LoraProj* p : {&gate, &up, &down})
    if (p->bias.defined() || !lora_linear_has_fast_path(x, p->weight, p->a, p->b, p->dropout, training)) return false;
  return true;
}

at::Tensor lora_mlp_fast(const at::Tensor& x, const LoraProj& gate, const LoraProj& up, const LoraProj& down) {
  // The master A/B may be float32: the function returns their gradients in their own dtypes.
  return LoraMlpFunction::apply(x, gate.weight, gate.a, gate.b, up.weight, up.a, up.b, down.weight, down.a, down.b,
                                gate.scaling, up.scaling, down.scaling);
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
bool lora_mlp_has_fast_path(const at::Tensor&, const LoraProj&, const LoraProj&, const LoraProj&, bool) {
  return false;
}
at::Tensor lora_mlp_fast(const at::Tensor&, const LoraProj&, const LoraProj&, const LoraProj&) {
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
