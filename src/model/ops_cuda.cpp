// The kernel seam: the ops of ops.h that have a project CUDA kernel dispatch to it here, through autograd
// functions that call the kernels' launchers in kernels/ for the forward and the backward pass. The ATen
// composites in ops.cpp stay the reference (CPU, float64 tests) and the fallback: other dtypes, other devices,
// builds without CUDA, and HS_KERNELS=0 in the environment (for A/B runs against the reference).
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "model/linear.h"
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

// The frozen base weight of a fast-path projection in the activations' dtype `dt`: the dense weight itself,
// or the packed base (its address kept as an int64 in the autograd context; see LoraProj::packed) unpacked
// anew.
at::Tensor base_weight(const at::Tensor& w, int64_t packed, at::ScalarType dt) {
  if (packed == 0) return w;
  at::Tensor u = reinterpret_cast<const Projection*>(packed)->unpack_weight();
  return u.scalar_type() == dt ? u : u.to(dt);
}

int64_t address(const Projection* p) { return reinterpret_cast<int64_t>(p); }

// Every LoRA product below is written before its base GEMM, which then accumulates into it (beta = 1: cuBLAS
// reads the output once in its epilogue, where the big GEMM is compute-bound): y = s·(l·r) first, then
// y += x·w. Adding the rank-r term after the base GEMM read and wrote the whole output again (a
// bandwidth-bound pass over [N, out] per projection, forward and dX), and rounded the base product to bf16
// before the add. `y` may be a column slice of a wider output (the q/k/v and gate/up buffers).
void lora_term_into(at::Tensor y, const at::Tensor& l, const at::Tensor& r, double s) {
  y.addmm_(l, r, /*beta=*/0.0, /*alpha=*/s);  // beta = 0: y's old contents are never read
}
at::Tensor lora_plus_base(const at::Tensor& l, const at::Tensor& r, double s, const at::Tensor& x,
                          const at::Tensor& w) {
  at::Tensor y = at::empty({l.size(0), r.size(1)}, l.options());
  lora_term_into(y, l, r, s);
  y.addmm_(x, w);
  return y;
}

// The rows of [out_i, in] weights as one [sum out_i, in] tensor: a view when they lie back to back in one
// buffer (Model::load lays q/k/v and gate/up out so on CUDA), else a concatenated copy.
at::Tensor rows_of(const std::vector<at::Tensor>& ws) {
  bool adjacent = true;
  int64_t rows = 0;
  for (size_t i = 0; i < ws.size(); ++i) {
    const at::Tensor& w = ws[i];
    adjacent = adjacent && w.is_contiguous() && w.scalar_type() == ws[0].scalar_type() &&
               w.size(1) == ws[0].size(1) && w.storage().is_alias_of(ws[0].storage()) &&
               (i == 0 || w.storage_offset() == ws[i - 1].storage_offset() + ws[i - 1].numel());
    rows += w.size(0);
  }
  if (adjacent) return ws[0].as_strided({rows, ws[0].size(1)}, {ws[0].size(1), 1});
  return at::cat(ws, 0);
}

// The bases of `ws` (dense weights, or packed ones unpacked now) as one [sum out, in] tensor in dtype dt on
// `device` (where the activations are). Packed
// bases are unpacked straight into their rows of one buffer (no per-weight temporary and concatenation: on
// an 8B NF4 model that copy moved as many bytes as the dequantization itself).
at::Tensor base_rows(const std::vector<at::Tensor>& ws, const std::vector<int64_t>& packed, at::ScalarType dt,
                     at::Device device) {
  bool any_packed = false;
  for (int64_t p : packed) any_packed = any_packed || p != 0;
  if (!any_packed) return rows_of(ws);
  std::vector<const Projection*> ps;
  int64_t rows = 0, in = -1;
  for (size_t i = 0; i < ws.size(); ++i) {
    const Projection* p = packed[i] != 0 ? reinterpret_cast<const Projection*>(packed[i]) : nullptr;
    ps.push_back(p);
    rows += p ? p->out_features() : ws[i].size(0);
    const int64_t in_i = p ? p->in_features() : ws[i].size(1);
    HS_CHECK(in < 0 || in_i == in, "fused projections disagree on in_features (", in, " vs ", in_i, ")");
    in = in_i;
  }
  at::Tensor out = at::empty({rows, in}, at::TensorOptions().dtype(dt).device(device));
  int64_t r = 0;
  for (size_t i = 0; i < ws.size(); ++i) {
    const int64_t n = ps[i] ? ps[i]->out_features() : ws[i].size(0);
    at::Tensor part = out.narrow(0, r, n);  // rows of a contiguous buffer: contiguous
    if (ps[i])
      ps[i]->unpack_weight_into(part);
    else
      part.copy_(ws[i]);
    r += n;
  }
  return out;
}

// LoRA projection with a hand-written backward; see ops.h (lora_linear_fast). `w` is the dense base or an
// empty tensor when `packed` names a packed one.
struct LoraLinearFunction : public torch::autograd::Function<LoraLinearFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const at::Tensor& bias, const at::Tensor& a, const at::Tensor& b, double scaling,
                            int64_t packed) {
    const auto dt = x.scalar_type();
    const int64_t in = x.size(-1);
    const at::Tensor x2 = x.reshape({-1, in});
    const at::Tensor a16 = a.to(dt), b16 = b.to(dt);
    const at::Tensor xa = at::mm(x2, a16.t());  // [N, r]
    at::Tensor y;
    {
      const at::Tensor W = base_weight(w, packed, dt);
      if (bias.numel() > 0) {
        y = at::addmm(bias, xa, b16.t(), /*beta=*/1.0, /*alpha=*/scaling);
        y.addmm_(x2, W.t());
      } else {
        y = lora_plus_base(xa, b16.t(), scaling, x2, W.t());
      }
    }
    ctx->save_for_backward({x2, w, a16, b16, xa});
    ctx->saved_data["scaling"] = scaling;
    ctx->saved_data["packed"] = packed;
    ctx->saved_data["a_dtype"] = a.scalar_type();
    ctx->saved_data["b_dtype"] = b.scalar_type();
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = y.size(1);
    return y.view(shape);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x2 = saved[0], &w = saved[1], &a16 = saved[2], &b16 = saved[3], &xa = saved[4];
    const double s = ctx->saved_data["scaling"].toDouble();
    const at::Tensor g = grads[0].reshape({-1, b16.size(0)});
    const at::Tensor gb = at::mm(g, b16);  // [N, r]
    at::Tensor dx, da, db;
    if (ctx->needs_input_grad(0)) {
      dx = lora_plus_base(gb, a16, s, g, base_weight(w, ctx->saved_data["packed"].toInt(), g.scalar_type()));
      std::vector<int64_t> shape(grads[0].sizes().begin(), grads[0].sizes().end());
      shape.back() = x2.size(1);
      dx = dx.view(shape);
    }
    if (ctx->needs_input_grad(3))
      da = at::mm(gb.t(), x2, at::kFloat).mul_(s).to(ctx->saved_data["a_dtype"].toScalarType());
    if (ctx->needs_input_grad(4))
      db = at::mm(g.t(), xa, at::kFloat).mul_(s).to(ctx->saved_data["b_dtype"].toScalarType());
    return {dx, at::Tensor(), at::Tensor(), da, db, at::Tensor(), at::Tensor()};
  }
};

// q, k, v with LoRA as one function; see ops.h (lora_qkv_fast). ts: per projection (q, k, v) its dense
// weight (or an empty tensor when packed), bias (or empty), A, B.
struct LoraQkvFunction : public torch::autograd::Function<LoraQkvFunction> {
  // (Autograd counts a TensorList argument as one input: the tensors are separate arguments.)
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& wq,
                            const at::Tensor& biq, const at::Tensor& aq, const at::Tensor& bq, const at::Tensor& wk,
                            const at::Tensor& bik, const at::Tensor& ak, const at::Tensor& bk, const at::Tensor& wv,
                            const at::Tensor& biv, const at::Tensor& av, const at::Tensor& bv, double s, int64_t pq,
                            int64_t pk, int64_t pv) {
    const std::vector<at::Tensor> ts{wq, biq, aq, bq, wk, bik, ak, bk, wv, biv, av, bv};
    const auto dt = x.scalar_type();
    const std::vector<int64_t> packed{pq, pk, pv};
    const at::Tensor x2 = x.reshape({-1, x.size(-1)});
    std::vector<at::Tensor> ws, biases, as, bs16;
    std::vector<int64_t> outs, ranks;
    for (int i = 0; i < 3; ++i) {
      ws.push_back(ts[size_t(4 * i)]);
      if (ts[size_t(4 * i + 1)].numel() > 0) biases.push_back(ts[size_t(4 * i + 1)]);
      as.push_back(ts[size_t(4 * i + 2)].to(dt));
      bs16.push_back(ts[size_t(4 * i + 3)].to(dt));
      outs.push_back(bs16.back().size(0));
      ranks.push_back(as.back().size(0));
    }
    const at::Tensor a16 = at::cat(as, 0);      // [r_q + r_k + r_v, in]
    const at::Tensor xa = at::mm(x2, a16.t());  // [N, r_q + r_k + r_v]
    at::Tensor y = at::empty({x2.size(0), outs[0] + outs[1] + outs[2]}, x2.options());
    if (!biases.empty()) y.copy_(at::cat(biases, 0).expand_as(y));
    for (int64_t i = 0, o = 0, r = 0; i < 3; o += outs[size_t(i)], r += ranks[size_t(i)], ++i)
      y.narrow(1, o, outs[size_t(i)])
          .addmm_(xa.narrow(1, r, ranks[size_t(i)]), bs16[size_t(i)].t(), biases.empty() ? 0.0 : 1.0, s);
    y.addmm_(x2, base_rows(ws, packed, dt, x2.device()).t());
    ctx->save_for_backward({x2, ws[0], ws[1], ws[2], a16, bs16[0], bs16[1], bs16[2], xa});
    ctx->saved_data["s"] = s;
    ctx->saved_data["packed"] = packed;
    ctx->saved_data["ranks"] = ranks;
    std::vector<int64_t> dts;
    for (int i = 0; i < 3; ++i)
      for (int j = 2; j < 4; ++j) dts.push_back(int64_t(ts[size_t(4 * i + j)].scalar_type()));
    ctx->saved_data["dtypes"] = dts;
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = y.size(1);
    return y.view(shape);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto v = ctx->get_saved_variables();
    const at::Tensor& x2 = v[0];
    const std::vector<at::Tensor> ws{v[1], v[2], v[3]}, bs16{v[5], v[6], v[7]};
    const at::Tensor &a16 = v[4], &xa = v[8];
    const double s = ctx->saved_data["s"].toDouble();
    const auto packed = ctx->saved_data["packed"].toIntVector();
    const auto ranks = ctx->saved_data["ranks"].toIntVector();
    const auto dts = ctx->saved_data["dtypes"].toIntVector();
    const int64_t total = bs16[0].size(0) + bs16[1].size(0) + bs16[2].size(0);
    const at::Tensor dy = grads[0].reshape({-1, total});
    std::vector<at::Tensor> dys, gbs;
    for (int64_t i = 0, o = 0; i < 3; o += bs16[size_t(i)].size(0), ++i) {
      dys.push_back(dy.narrow(1, o, bs16[size_t(i)].size(0)));
      gbs.push_back(at::mm(dys.back(), bs16[size_t(i)]));  // [N, r_i]
    }
    const at::Tensor gb = at::cat(gbs, 1);
    variable_list out(17);
    if (ctx->needs_input_grad(0)) {
      at::Tensor dx = lora_plus_base(gb, a16, s, dy, base_rows(ws, packed, dy.scalar_type(), dy.device()));
      std::vector<int64_t> shape(grads[0].sizes().begin(), grads[0].sizes().end());
      shape.back() = x2.size(1);
      out[0] = dx.view(shape);
    }
    const at::Tensor da = at::mm(gb.t(), x2, at::kFloat).mul_(s);  // [r_q + r_k + r_v, in]
    for (int64_t i = 0, r = 0; i < 3; r += ranks[size_t(i)], ++i) {
      out[size_t(1 + 4 * i + 2)] = da.narrow(0, r, ranks[size_t(i)]).to(at::ScalarType(dts[size_t(2 * i)]));
      out[size_t(1 + 4 * i + 3)] = at::mm(dys[size_t(i)].t(), xa.narrow(1, r, ranks[size_t(i)]), at::kFloat)
                                       .mul_(s)
                                       .to(at::ScalarType(dts[size_t(2 * i + 1)]));
    }
    return out;
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

// The LoRA SwiGLU MLP as one function; see ops.h (lora_mlp_fast). ts: per projection (gate, up, down) its
// dense weight (or an empty tensor when packed), A, B. gate and up run as one GEMM into gu = [g | u]
// ([N, 2I]); the backward writes dg, du over it. The scalings of gate and up are equal (checked by the
// caller).
struct LoraMlpFunction : public torch::autograd::Function<LoraMlpFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& wg_,
                            const at::Tensor& ag, const at::Tensor& bg, const at::Tensor& wu_, const at::Tensor& au,
                            const at::Tensor& bu, const at::Tensor& wd_, const at::Tensor& ad, const at::Tensor& bd,
                            double sgu, double sd, int64_t pg, int64_t pu, int64_t pd) {
    const std::vector<at::Tensor> ts{wg_, ag, bg, wu_, au, bu, wd_, ad, bd};
    const auto dt = x.scalar_type();
    const at::Tensor x2 = x.reshape({-1, x.size(-1)});
    const at::Tensor &wg = ts[0], &wu = ts[3], &wd = ts[6];
    const at::Tensor agu16 = at::cat({ts[1].to(dt), ts[4].to(dt)}, 0);  // [r_g + r_u, in]
    const at::Tensor bg16 = ts[2].to(dt), bu16 = ts[5].to(dt), ad16 = ts[7].to(dt), bd16 = ts[8].to(dt);
    const int64_t I = bg16.size(0), rg = ts[1].size(0), ru = ts[4].size(0);
    const at::Tensor xagu = at::mm(x2, agu16.t());                 // [N, r_g + r_u]
    at::Tensor gu = at::empty({x2.size(0), 2 * I}, x2.options());  // [g | u]
    at::Tensor g = gu.narrow(1, 0, I), u = gu.narrow(1, I, I);
    lora_term_into(g, xagu.narrow(1, 0, rg), bg16.t(), sgu);
    lora_term_into(u, xagu.narrow(1, rg, ru), bu16.t(), sgu);
    gu.addmm_(x2, base_rows({wg, wu}, {pg, pu}, dt, x2.device()).t());
    const int64_t rows = gu.size(0);
    at::Tensor h = at::empty({rows, I}, gu.options());
    check_launch(kernels::swiglu_forward(g.data_ptr(), u.data_ptr(), h.data_ptr(), rows, I, 2 * I, I,
                                         kernel_dtype(dt), c10::cuda::getCurrentCUDAStream().stream()),
                 "swiglu_forward");
    const at::Tensor ha = at::mm(h, ad16.t());
    at::Tensor y = lora_plus_base(ha, bd16.t(), sd, h, base_weight(wd, pd, dt).t());
    ctx->save_for_backward({x2, wg, wu, wd, agu16, bg16, bu16, ad16, bd16, gu, xagu, ha});
    ctx->saved_data["s"] = std::vector<double>{sgu, sd};
    ctx->saved_data["packed"] = std::vector<int64_t>{pg, pu, pd};
    std::vector<int64_t> dts;
    for (int i = 0; i < 3; ++i)
      for (int j = 1; j < 3; ++j) dts.push_back(int64_t(ts[size_t(3 * i + j)].scalar_type()));
    ctx->saved_data["dtypes"] = dts;
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = y.size(1);
    return y.view(shape);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto v = ctx->get_saved_variables();
    const at::Tensor &x2 = v[0], &wg = v[1], &wu = v[2], &wd = v[3], &agu16 = v[4], &bg16 = v[5],
                     &bu16 = v[6], &ad16 = v[7], &bd16 = v[8], &gu = v[9], &xagu = v[10], &ha = v[11];
    const auto s = ctx->saved_data["s"].toDoubleVector();
    const auto packed = ctx->saved_data["packed"].toIntVector();
    const double sgu = s[0], sd = s[1];
    const auto dt = gu.scalar_type();
    const auto stream = c10::cuda::getCurrentCUDAStream().stream();
    const int64_t I = bg16.size(0), rg = bg16.size(1), ru = bu16.size(1), rows = gu.size(0);
    const at::Tensor dy = grads[0].reshape({-1, bd16.size(0)});
    at::Tensor g = gu.narrow(1, 0, I), u = gu.narrow(1, I, I);
    at::Tensor dad, dbd;
    {
      const at::Tensor gbd = at::mm(dy, bd16);
      at::Tensor dh = lora_plus_base(gbd, ad16, sd, dy, base_weight(wd, packed[2], dt));
      dbd = at::mm(dy.t(), ha, at::kFloat).mul_(sd);
      // transformers' SwiGLU under autograd (kernels/swiglu.h), dg and du written over g and u (nothing else
      // holds them); the same pass writes h again (the forward's roundings) for the down projection's dA.
      at::Tensor h = at::empty({rows, I}, gu.options());
      check_launch(kernels::swiglu_backward_h(dh.data_ptr(), g.data_ptr(), u.data_ptr(), g.data_ptr(),
                                              u.data_ptr(), h.data_ptr(), rows, I, 2 * I, I, 2 * I, I,
                                              kernel_dtype(dt), stream),
                   "swiglu_backward");
      dh = at::Tensor();
      dad = at::mm(gbd.t(), h, at::kFloat).mul_(sd);
    }
    const at::Tensor& dgu = gu;  // [dg | du]
    const at::Tensor dg = g, du = u;
    const at::Tensor gb = at::cat({at::mm(dg, bg16), at::mm(du, bu16)}, 1);  // [N, r_g + r_u]
    variable_list out(15);
    if (ctx->needs_input_grad(0)) {
      at::Tensor dx =
          lora_plus_base(gb, agu16, sgu, dgu, base_rows({wg, wu}, {packed[0], packed[1]}, dt, dgu.device()));
      std::vector<int64_t> shape(grads[0].sizes().begin(), grads[0].sizes().end());
      shape.back() = x2.size(1);
      out[0] = dx.view(shape);
    }
    const at::Tensor dagu = at::mm(gb.t(), x2, at::kFloat).mul_(sgu);
    const auto dts = ctx->saved_data["dtypes"].toIntVector();
    auto as = [&](const at::Tensor& t, int i) { return t.to(at::ScalarType(dts[size_t(i)])); };
    out[2] = as(dagu.narrow(0, 0, rg), 0);
    out[3] = as(at::mm(dg.t(), xagu.narrow(1, 0, rg), at::kFloat).mul_(sgu), 1);
    out[5] = as(dagu.narrow(0, rg, ru), 2);
    out[6] = as(at::mm(du.t(), xagu.narrow(1, rg, ru), at::kFloat).mul_(sgu), 3);
    out[8] = as(dad, 4);
    out[9] = as(dbd, 5);
    return out;
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


bool lora_proj_has_fast_path(const at::Tensor& x, const LoraProj& p, bool training) {
  if (p.weight.defined()) return lora_linear_has_fast_path(x, p.weight, p.a, p.b, p.dropout, training);
  return p.packed != nullptr && kernels_enabled() && (p.a.requires_grad() || p.b.requires_grad()) &&
         x.is_cuda() && x.scalar_type() == at::kBFloat16 && (p.dropout == 0 || !training) && x.numel() > 0 &&
         (!p.bias.defined() || p.bias.scalar_type() == at::kBFloat16);
}

namespace {
// A projection's tensors for the functions above: weight (empty when packed), bias (empty when none), A, B.
void push_parts(std::vector<at::Tensor>& ts, const LoraProj& p, const at::TensorOptions& empty, bool bias) {
  ts.push_back(p.weight.defined() ? p.weight : at::empty({0}, empty));
  if (bias) ts.push_back(p.bias.defined() ? p.bias : at::empty({0}, empty));
  ts.push_back(p.a);
  ts.push_back(p.b);
}
}  // namespace

at::Tensor lora_proj_fast(const at::Tensor& x, const LoraProj& p) {
  // Autograd functions take defined tensors only: no bias (or a packed base's weight) is an empty one.
  const at::Tensor empty = at::empty({0}, x.options());
  return LoraLinearFunction::apply(x, p.weight.defined() ? p.weight : empty, p.bias.defined() ? p.bias : empty,
                                   p.a, p.b, p.scaling, address(p.packed));
}

at::Tensor lora_linear_fast(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                            const at::Tensor& a, const at::Tensor& b, double scaling) {
  return lora_proj_fast(x, LoraProj{weight, bias, a, b, scaling, 0.0});
}

bool lora_qkv_has_fast_path(const at::Tensor& x, const LoraProj& q, const LoraProj& k, const LoraProj& v,
                            bool training) {
  for (const LoraProj* p : {&q, &k, &v})
    if (!lora_proj_has_fast_path(x, *p, training) || p->scaling != q.scaling ||
        p->bias.defined() != q.bias.defined())
      return false;
  return true;
}

at::Tensor lora_qkv_fast(const at::Tensor& x, const LoraProj& q, const LoraProj& k, const LoraProj& v) {
  std::vector<at::Tensor> ts;
  for (const LoraProj* p : {&q, &k, &v}) push_parts(ts, *p, x.options(), /*bias=*/true);
  return LoraQkvFunction::apply(x, ts[0], ts[1], ts[2], ts[3], ts[4], ts[5], ts[6], ts[7], ts[8], ts[9], ts[10],
                                ts[11], q.scaling, address(q.packed), address(k.packed), address(v.packed));
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
         x.size(3) % 2 == 0 && x.stride(3) == 1 && x.numel() > 0 && table.cos.is_cuda() &&
         table.cos.scalar_type() == at::kFloat && table.cos.is_contiguous() && table.sin.is_contiguous() &&
         table.cos.size(1) == x.size(3) && position_ids.is_cuda() &&
         position_ids.scalar_type() == at::kLong && position_ids.size(0) == x.size(0) &&
         position_ids.size(1) == x.size(2);
}

at::Tensor rope_kernel(const at::Tensor& x, const RopeTable& table, const at::Tensor& position_ids) {
  // x [B, H, T, D] is a transposed view of a [B, T, H, D] buffer; the kernel runs on that buffer (made
  // dense first when it is a slice of a wider one, as q and k of the fused q/k/v projection are).
  at::Tensor xt = x.transpose(1, 2);
  if (!xt.is_contiguous()) xt = xt.contiguous();
  at::Tensor out = RopeFunction::apply(xt, table.cos, table.sin, position_ids.reshape({-1}).contiguous());
  return out.transpose(1, 2);
}

bool lora_mlp_has_fast_path(const at::Tensor& x, const LoraProj& gate, const LoraProj& up,
                            const LoraProj& down, bool training) {
  for (const LoraProj* p : {&gate, &up, &down})
    if (p->bias.defined() || !lora_proj_has_fast_path(x, *p, training)) return false;
  return gate.scaling == up.scaling && gate.b.size(0) == up.b.size(0);
}

at::Tensor lora_mlp_fast(const at::Tensor& x, const LoraProj& gate, const LoraProj& up,
                         const LoraProj& down) {
  // The master A/B may be float32: the function returns their gradients in their own dtypes.
  std::vector<at::Tensor> ts;
  for (const LoraProj* p : {&gate, &up, &down}) push_parts(ts, *p, x.options(), /*bias=*/false);
  return LoraMlpFunction::apply(x, ts[0], ts[1], ts[2], ts[3], ts[4], ts[5], ts[6], ts[7], ts[8], gate.scaling,
                                down.scaling, address(gate.packed), address(up.packed), address(down.packed));
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
bool lora_proj_has_fast_path(const at::Tensor&, const LoraProj&, bool) { return false; }
at::Tensor lora_proj_fast(const at::Tensor&, const LoraProj&) {
  throw Error("this build has no CUDA kernels").hint("configure with -DHS_CUDA=ON");
}
bool lora_qkv_has_fast_path(const at::Tensor&, const LoraProj&, const LoraProj&, const LoraProj&, bool) {
  return false;
}
at::Tensor lora_qkv_fast(const at::Tensor&, const LoraProj&, const LoraProj&, const LoraProj&) {
  throw Error("this build has no CUDA kernels").hint("configure with -DHS_CUDA=ON");
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
