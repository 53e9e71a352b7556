// The kernel seam: the ops of ops.h that have a project CUDA kernel dispatch to it here, through autograd
// functions that call the kernels' launchers in kernels/ for the forward and the backward pass. The ATen
// composites in ops.cpp stay the reference (CPU, float64 tests) and the fallback: other dtypes, other devices,
// builds without CUDA, and HS_KERNELS=0 in the environment (for A/B runs against the reference).
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "model/ops.h"

#if HS_HAVE_KERNELS
#include <ATen/core/grad_mode.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <vector>

#include "kernels/cross_entropy.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"
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
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const at::Tensor& bias, const at::Tensor& a, const at::Tensor& b,
                            double scaling) {
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

// h = silu(g) * u [rows, cols] by kernels/swiglu (g, u contiguous, same shape).
at::Tensor swiglu_into(const at::Tensor& g, const at::Tensor& u) {
  const int64_t cols = g.size(-1), rows = g.numel() / cols;
  at::Tensor h = at::empty_like(g);
  check_launch(
      kernels::swiglu_forward(g.data_ptr(), u.data_ptr(), h.data_ptr(), rows, cols, cols, cols,
                              kernel_dtype(g.scalar_type()), c10::cuda::getCurrentCUDAStream().stream()),
      "swiglu_forward");
  return h;
}

// dg, du from dh, g, u (all contiguous, same shape; dg may be g and du may be u).
void swiglu_backward_into(const at::Tensor& dh, const at::Tensor& g, const at::Tensor& u,
                          const at::Tensor& dg, const at::Tensor& du) {
  const int64_t cols = g.size(-1), rows = g.numel() / cols;
  check_launch(kernels::swiglu_backward(
                   dh.data_ptr(), g.data_ptr(), u.data_ptr(), dg.data_ptr(), du.data_ptr(), rows, cols, cols,
                   cols, cols, kernel_dtype(g.scalar_type()), c10::cuda::getCurrentCUDAStream().stream()),
               "swiglu_backward");
}

// silu(gate) * up with the kernels (saves gate and up; silu is recomputed in the backward).
struct SwigluFunction : public torch::autograd::Function<SwigluFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& g_in, const at::Tensor& u_in) {
    const at::Tensor g = g_in.contiguous(), u = u_in.contiguous();
    ctx->save_for_backward({g, u});
    return swiglu_into(g, u);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto v = ctx->get_saved_variables();
    at::Tensor dg = at::empty_like(v[0]), du = at::empty_like(v[1]);
    swiglu_backward_into(grads[0].contiguous(), v[0], v[1], dg, du);
    return {dg, du};
  }
};

// RoPE by kernels/rope on x [B, T, H, D] contiguous, positions [B*T] int64, float32 tables; returns a new
// tensor; the backward needs only the positions and tables.
struct RopeFunction : public torch::autograd::Function<RopeFunction> {
  static at::Tensor run(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                        const at::Tensor& pos, bool backward) {
    const int64_t D = x.size(3), H = x.size(2), tokens = x.size(0) * x.size(1);
    at::Tensor out = at::empty_like(x);
    auto launch = backward ? kernels::rope_backward : kernels::rope_forward;
    check_launch(launch(x.data_ptr(), out.data_ptr(), pos.data_ptr<int64_t>(), cos.data_ptr<float>(),
                        sin.data_ptr<float>(), tokens, H, D, H * D, cos.size(0),
                        kernel_dtype(x.scalar_type()), c10::cuda::getCurrentCUDAStream().stream()),
                 backward ? "rope_backward" : "rope_forward");
    return out;
  }
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cos,
                            const at::Tensor& sin, const at::Tensor& pos) {
    ctx->save_for_backward({cos, sin, pos});
    return run(x, cos, sin, pos, false);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto v = ctx->get_saved_variables();
    return {run(grads[0].contiguous(), v[0], v[1], v[2], true), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// The LoRA SwiGLU MLP as one function; see ops.h (lora_mlp_fast). Inputs: x, then per projection (gate, up,
// down) its frozen weight and LoRA A, B; scalings as doubles.
struct LoraMlpFunction : public torch::autograd::Function<LoraMlpFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& wg,
                            const at::Tensor& ag, const at::Tensor& bg, const at::Tensor& wu,
                            const at::Tensor& au, const at::Tensor& bu, const at::Tensor& wd,
                            const at::Tensor& ad, const at::Tensor& bd, double sg, double su, double sd) {
    const auto dt = x.scalar_type();
    const at::Tensor x2 = x.reshape({-1, x.size(-1)});
    const at::Tensor ag16 = ag.to(dt), bg16 = bg.to(dt), au16 = au.to(dt), bu16 = bu.to(dt), ad16 = ad.to(dt),
                     bd16 = bd.to(dt);
    at::Tensor g = at::mm(x2, wg.t()), u = at::mm(x2, wu.t());
    const at::Tensor xag = at::mm(x2, ag16.t()), xau = at::mm(x2, au16.t());
    g.addmm_(xag, bg16.t(), 1.0, sg);
    u.addmm_(xau, bu16.t(), 1.0, su);
    at::Tensor h = swiglu_into(g, u);
    at::Tensor y = at::mm(h, wd.t());
    const at::Tensor ha = at::mm(h, ad16.t());
    y.addmm_(ha, bd16.t(), 1.0, sd);
    ctx->save_for_backward({x2, wg, wu, wd, ag16, bg16, au16, bu16, ad16, bd16, g, u, xag, xau, ha});
    ctx->saved_data["s"] = std::vector<double>{sg, su, sd};
    ctx->saved_data["dtypes"] =
        std::vector<int64_t>{int64_t(ag.scalar_type()), int64_t(bg.scalar_type()), int64_t(au.scalar_type()),
                             int64_t(bu.scalar_type()), int64_t(ad.scalar_type()), int64_t(bd.scalar_type())};
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = wd.size(0);
    return y.view(shape);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto v = ctx->get_saved_variables();
    const at::Tensor &x2 = v[0], &wg = v[1], &wu = v[2], &wd = v[3], &ag16 = v[4], &bg16 = v[5], &au16 = v[6],
                     &bu16 = v[7], &ad16 = v[8], &bd16 = v[9], &g = v[10], &u = v[11], &xag = v[12],
                     &xau = v[13], &ha = v[14];
    const auto s = ctx->saved_data["s"].toDoubleVector();
    const double sg = s[0], su = s[1], sd = s[2];
    const at::Tensor dy = grads[0].reshape({-1, wd.size(0)});
    at::Tensor dad, dbd, dh;
    {
      const at::Tensor h = swiglu_into(g, u);  // recomputed, same roundings as the forward
      const at::Tensor gbd = at::mm(dy, bd16);
      dh = at::mm(dy, wd);
      dh.addmm_(gbd, ad16, 1.0, sd);
      dad = at::mm(gbd.t(), h, at::kFloat).mul_(sd);
      dbd = at::mm(dy.t(), ha, at::kFloat).mul_(sd);
    }
    // transformers' SwiGLU under autograd (kernels/swiglu.h), written over g and u: nothing else holds them.
    const at::Tensor dg = g, du = u;
    swiglu_backward_into(dh, g, u, dg, du);
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
    return {dx,           at::Tensor(), dag, dbg,          at::Tensor(), dau,         dbu,
            at::Tensor(), dad,          dbd, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// Rows per chunk of the fused head + loss: at most 2^27 logits (256 MiB in bf16), the gradient written over
// them.
int64_t ce_chunk_rows(int64_t vocab) {
  return std::max<int64_t>(1, (int64_t(1) << 27) / std::max<int64_t>(1, vocab));
}

// Head + cross-entropy with the gradient made in the forward pass, a chunk of rows at a time; see ops.h.
struct LinearCrossEntropyFunction : public torch::autograd::Function<LinearCrossEntropyFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                            const at::Tensor& targets) {
    const bool need_dh = hidden.requires_grad(), need_dw = weight.requires_grad();
    const int64_t n = hidden.size(0), vocab = weight.size(0), step = ce_chunk_rows(vocab);
    const at::Tensor t = targets.to(at::kLong).contiguous();
    at::Tensor dh = need_dh ? at::empty_like(hidden) : at::Tensor();
    at::Tensor dw = need_dw ? at::zeros(weight.sizes(), weight.options().dtype(at::kFloat)) : at::Tensor();
    at::Tensor loss = at::zeros({}, hidden.options().dtype(at::kFloat));
    for (int64_t begin = 0; begin < n; begin += step) {
      const int64_t end = std::min(n, begin + step);
      const at::Tensor h = hidden.slice(0, begin, end), tc = t.slice(0, begin, end);
      // bf16 GEMM as HF's lm_head; then kernels/cross_entropy: float32 loss per row and, over the logits,
      // their gradient softmax - onehot.
      at::Tensor logits = at::mm(h, weight.t());
      at::Tensor rows_loss = at::empty({end - begin}, hidden.options().dtype(at::kFloat));
      const bool grad_needed = need_dh || need_dw;
      check_launch(kernels::cross_entropy_forward_backward(
                       logits.data_ptr(), tc.data_ptr<int64_t>(), rows_loss.data_ptr<float>(),
                       grad_needed ? logits.data_ptr() : nullptr, end - begin, vocab, vocab,
                       kernel_dtype(logits.scalar_type()), c10::cuda::getCurrentCUDAStream().stream()),
                   "cross_entropy_forward_backward");
      loss.add_(rows_loss.sum());
      if (!grad_needed) continue;
      const at::Tensor& grad = logits;
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
  // Any adapter that trains takes this path, with or without autograd recording, so that a checkpointed
  // layer's no-grad forward and its recomputation (and eval during training) compute the same numbers.
  return kernels_enabled() && (a.requires_grad() || b.requires_grad()) && x.is_cuda() &&
         x.scalar_type() == at::kBFloat16 && weight.scalar_type() == at::kBFloat16 &&
         !weight.requires_grad() && (dropout_p == 0 || !training) && x.numel() > 0;
}

at::Tensor lora_linear_fast(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                            const at::Tensor& a, const at::Tensor& b, double scaling) {
  // Autograd functions take defined tensors only: no bias is an empty one.
  return LoraLinearFunction::apply(x, weight, bias.defined() ? bias : at::empty({0}, weight.options()), a, b,
                                   scaling);
}

bool swiglu_has_kernel(const at::Tensor& gate, const at::Tensor& up) {
  const auto t = gate.scalar_type();
  return kernels_enabled() && gate.is_cuda() && (t == at::kFloat || t == at::kBFloat16) &&
         up.scalar_type() == t && up.device() == gate.device() && gate.sizes() == up.sizes() &&
         gate.numel() > 0;
}

at::Tensor swiglu_kernel(const at::Tensor& gate, const at::Tensor& up) {
  return SwigluFunction::apply(gate, up);
}

bool rope_has_kernel(const at::Tensor& x, const RopeTable& table, const at::Tensor& position_ids) {
  const auto t = x.scalar_type();
  return kernels_enabled() && x.is_cuda() && (t == at::kFloat || t == at::kBFloat16) && x.dim() == 4 &&
         x.size(3) % 2 == 0 && x.transpose(1, 2).is_contiguous() && x.numel() > 0 && table.cos.is_cuda() &&
         table.cos.scalar_type() == at::kFloat && table.cos.is_contiguous() && table.sin.is_contiguous() &&
         table.cos.size(1) == x.size(3) && position_ids.is_cuda() &&
         position_ids.scalar_type() == at::kLong && position_ids.size(0) == x.size(0) &&
         position_ids.size(1) == x.size(2);
}

at::Tensor rope_kernel(const at::Tensor& x, const RopeTable& table, const at::Tensor& position_ids) {
  // x [B, H, T, D] is a transposed view of a [B, T, H, D] buffer; the kernel runs on that buffer.
  at::Tensor out =
      RopeFunction::apply(x.transpose(1, 2), table.cos, table.sin, position_ids.reshape({-1}).contiguous());
  return out.transpose(1, 2);
}

bool lora_mlp_has_fast_path(const at::Tensor& x, const LoraProj& gate, const LoraProj& up,
                            const LoraProj& down, bool training) {
  for (const LoraProj* p : {&gate, &up, &down})
    if (p->bias.defined() || !lora_linear_has_fast_path(x, p->weight, p->a, p->b, p->dropout, training))
      return false;
  return true;
}

at::Tensor lora_mlp_fast(const at::Tensor& x, const LoraProj& gate, const LoraProj& up,
                         const LoraProj& down) {
  // The master A/B may be float32: the function returns their gradients in their own dtypes.
  return LoraMlpFunction::apply(x, gate.weight, gate.a, gate.b, up.weight, up.a, up.b, down.weight, down.a,
                                down.b, gate.scaling, up.scaling, down.scaling);
}

bool linear_cross_entropy_has_fast_path(const at::Tensor& hidden, const at::Tensor& weight) {
  return kernels_enabled() && at::GradMode::is_enabled() && hidden.is_cuda() &&
         hidden.scalar_type() == at::kBFloat16 && weight.scalar_type() == at::kBFloat16 && hidden.size(0) > 0;
}

LossSum linear_cross_entropy_fast(const at::Tensor& hidden, const at::Tensor& weight,
                                  const at::Tensor& targets) {
  LossSum out;
  out.sum = LinearCrossEntropyFunction::apply(hidden.contiguous(), weight, targets);
  out.count = targets.size(0);
  return out;
}
#else
bool lora_linear_has_fast_path(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                               double, bool) {
  return false;
}
at::Tensor lora_linear_fast(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const at::Tensor&, double) {
  throw Error("this build has no CUDA kernels").hint("configure with -DHS_CUDA=ON");
}
bool lora_mlp_has_fast_path(const at::Tensor&, const LoraProj&, const LoraProj&, const LoraProj&, bool) {
  return false;
}
bool swiglu_has_kernel(const at::Tensor&, const at::Tensor&) { return false; }
at::Tensor swiglu_kernel(const at::Tensor&, const at::Tensor&) {
  throw Error("this build has no CUDA kernels").hint("configure with -DHS_CUDA=ON");
}
bool rope_has_kernel(const at::Tensor&, const RopeTable&, const at::Tensor&) { return false; }
at::Tensor rope_kernel(const at::Tensor&, const RopeTable&, const at::Tensor&) {
  throw Error("this build has no CUDA kernels").hint("configure with -DHS_CUDA=ON");
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
