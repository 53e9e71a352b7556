// The training fast paths of model/ops (LoRA projection with a hand-written backward; fused head +
// cross-entropy) against float64 references computed from the same (bf16-rounded) inputs, and against the
// reference ops (PEFT's / HF's formulas in ATen, under autograd) on the same GPU.
#include <array>
#include <cstdlib>

#include <torch/csrc/autograd/autograd.h>
#include <torch/cuda.h>

#include "model/ops.h"
#include "support/test_support.h"

namespace {

namespace ops = hs::model::ops;

#define REQUIRE_FAST_PATH()                                                                        \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible; fast-path test skipped"; \
  if (!ops::kernels_enabled()) GTEST_SKIP() << "kernels disabled (HS_KERNELS=0 or a CPU build)"

double rel_err(const at::Tensor& a, const at::Tensor& ref) {
  auto a64 = a.to(at::kCPU, at::kDouble), r64 = ref.to(at::kCPU, at::kDouble);
  return (a64 - r64).norm().item<double>() / r64.norm().item<double>();
}

at::Tensor leaf(const at::Tensor& t) { return t.detach().clone().requires_grad_(true); }

struct LoraGrads {
  at::Tensor y, dx, da, db;
};

LoraGrads run_lora(bool fast, const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias,
                   const at::Tensor& a, const at::Tensor& b, double s, const at::Tensor& g) {
  auto xl = leaf(x), al = leaf(a), bl = leaf(b);
  EXPECT_EQ(ops::lora_linear_has_fast_path(xl, w, al, bl, 0.0, true), fast || ops::kernels_enabled());
  at::Tensor y = fast ? ops::lora_linear_fast(xl, w, bias, al, bl, s)
                      : ops::lora_linear_reference(xl, w, bias, al, bl, s, 0.0, true);
  torch::autograd::backward({y}, {g});
  return {y.detach(), xl.grad(), al.grad(), bl.grad()};
}

TEST(FastPath, LoraLinearMatchesFloat64AndPeft) {
  REQUIRE_FAST_PATH();
  for (bool with_bias : {false, true}) {
    const int64_t B = 3, T = 101, in = 512, out = 384, r = 16;
    const double s = 2.0;
    auto cuda = at::TensorOptions().device(at::kCUDA);
    auto x = at::randn({B, T, in}, cuda).to(at::kBFloat16);
    auto w = (at::randn({out, in}, cuda) * 0.05).to(at::kBFloat16);
    auto bias = with_bias ? (at::randn({out}, cuda) * 0.1).to(at::kBFloat16) : at::Tensor();
    auto a = at::randn({r, in}, cuda) * 0.05;  // float32 masters, as the trainer keeps them
    auto b = at::randn({out, r}, cuda) * 0.05;
    auto g = at::randn({B, T, out}, cuda).to(at::kBFloat16);

    // float64 reference from the same inputs.
    auto x64 = x.to(at::kDouble).view({-1, in}), w64 = w.to(at::kDouble), a64 = a.to(at::kDouble),
         b64 = b.to(at::kDouble), g64 = g.to(at::kDouble).view({-1, out});
    auto xa = at::mm(x64, a64.t());
    auto y64 = at::mm(x64, w64.t()) + s * at::mm(xa, b64.t());
    if (with_bias) y64 = y64 + bias.to(at::kDouble);
    auto gb = at::mm(g64, b64);
    auto dx64 = at::mm(g64, w64) + s * at::mm(gb, a64);
    auto da64 = s * at::mm(gb.t(), x64), db64 = s * at::mm(g64.t(), xa);

    LoraGrads f = run_lora(true, x, w, bias, a, b, s, g);
    LoraGrads p = run_lora(false, x, w, bias, a, b, s, g);
    ASSERT_EQ(f.y.scalar_type(), at::kBFloat16);
    ASSERT_EQ(f.da.scalar_type(), at::kFloat);
    ASSERT_EQ(f.db.scalar_type(), at::kFloat);
    // bf16 outputs: one rounding (2^-9 relative) plus bf16 copies of A, B and x A^T in the GEMMs.
    const std::pair<const char*, std::array<at::Tensor, 3>> cases[] = {{"y", {f.y, p.y, y64}},
                                                                       {"dx", {f.dx, p.dx, dx64}},
                                                                       {"dA", {f.da, p.da, da64}},
                                                                       {"dB", {f.db, p.db, db64}}};
    for (const auto& [name, t] : cases) {
      const double fast_err = rel_err(t[0].reshape(t[2].sizes()), t[2]);
      const double peft_err = rel_err(t[1].reshape(t[2].sizes()), t[2]);
      EXPECT_LT(fast_err, 8e-3) << name << " bias=" << with_bias << " (PEFT's formula: " << peft_err << ")";
      std::printf("lora %-2s bias=%d: fast %.2e, PEFT formula %.2e (rel. L2 vs float64)\n", name,
                  int(with_bias), fast_err, peft_err);
    }
  }
}

// Packed rows of equal samples (attention_layout's segment_len: B*T/L plain causal rows, one SDPA call, cuDNN's
// kernel on Hopper) against flash-attention's varlen path on the same layout and a float64 reference: output
// and q/k/v gradients, GQA and MHA, q/k/v as the model makes them ([B, H, T, D] views of [B, T, H, D]).
TEST(FastPath, EqualSegmentsAttentionMatchesVarlenAndFloat64) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  if (std::getenv("HS_ATTENTION_SEGMENTS")) GTEST_SKIP() << "HS_ATTENTION_SEGMENTS is set: the path under test may be off";
  struct Case {
    int64_t rows, T, L, H, KV, D;
  };
  for (const Case& c : {Case{1, 4096, 1024, 8, 2, 128}, Case{2, 2048, 512, 4, 4, 64}, Case{1, 6144, 2048, 16, 8, 64}}) {
    SCOPED_TRACE(std::to_string(c.T) + "/" + std::to_string(c.L) + " H" + std::to_string(c.H) + " KV" +
                 std::to_string(c.KV) + " D" + std::to_string(c.D));
    at::manual_seed(c.T + c.H);
    auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
    auto make = [&](int64_t h) { return at::randn({c.rows, c.T, h, c.D}, opts); };
    const at::Tensor q0 = make(c.H), k0 = make(c.KV), v0 = make(c.KV), g0 = make(c.H);
    std::vector<int32_t> cu;
    for (int64_t i = 0; i <= c.rows * c.T; i += c.L) cu.push_back(int32_t(i));
    const ops::AttentionLayout seg = ops::attention_layout(at::tensor(cu), c.rows, c.T, at::kCUDA);
    ASSERT_EQ(seg.segment_len, c.L);
    ops::AttentionLayout var = seg;
    var.segment_len = 0;
    struct Out {
      at::Tensor o, dq, dk, dv;
    };
    auto run = [&](const ops::AttentionLayout& layout) {
      at::Tensor q = leaf(q0), k = leaf(k0), v = leaf(v0);
      at::Tensor o = ops::attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), layout).transpose(1, 2);
      torch::autograd::backward({o}, {g0});
      return Out{o.detach(), q.grad(), k.grad(), v.grad()};
    };
    const Out a = run(seg), b = run(var);
    // float64: each segment on its own, K/V heads repeated for GQA.
    auto seg64 = [&](const at::Tensor& t) {
      return t.to(at::kCPU, at::kDouble).reshape({c.rows * c.T / c.L, c.L, t.size(2), c.D}).transpose(1, 2);
    };
    at::Tensor q = seg64(q0).requires_grad_(true), k = seg64(k0).requires_grad_(true), v = seg64(v0).requires_grad_(true);
    const int64_t rep = c.H / c.KV;
    at::Tensor o64 = at::scaled_dot_product_attention(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), {},
                                                      0.0, true);
    torch::autograd::backward({o64}, {seg64(g0)});
    auto back = [&](const at::Tensor& t) { return t.transpose(1, 2).reshape({c.rows, c.T, t.size(1), c.D}); };
    const Out r{back(o64.detach()), back(q.grad()), back(k.grad()), back(v.grad())};
    const std::vector<std::pair<const char*, std::array<at::Tensor, 3>>> outs{
        {"o", {a.o, b.o, r.o}}, {"dq", {a.dq, b.dq, r.dq}}, {"dk", {a.dk, b.dk, r.dk}}, {"dv", {a.dv, b.dv, r.dv}}};
    for (const auto& [what, t] : outs) {
      const double e_seg = rel_err(t[0], t[2]), e_var = rel_err(t[1], t[2]);
      std::printf("[ measured ] %s: segments %.3e, varlen %.3e rel. L2 vs float64\n", what, e_seg, e_var);
      // bf16 inputs, bf16 outputs: both within a few bf16 roundings, and neither much worse than the other.
      EXPECT_LT(e_seg, 1e-2) << what;
      EXPECT_LT(e_seg, 1.5 * e_var + 1e-3) << what;
    }
  }
}

// Packed samples of unequal lengths padded to the longest (ops::pad_samples, HS_ATTENTION_PADDED=1): one SDPA
// call, against flash-attention's varlen kernel on the same layout and float64 per sample.
TEST(FastPath, PaddedSamplesAttentionMatchesVarlenAndFloat64) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  if (std::getenv("HS_ATTENTION_PADDED")) GTEST_SKIP() << "HS_ATTENTION_PADDED is set: the varlen side would be padded too";
  const int64_t T = 4096, H = 16, KV = 8, D = 128;
  const std::vector<int64_t> lens{1900, 2048, 148};  // one packed row
  at::manual_seed(17);
  auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const at::Tensor q0 = at::randn({1, T, H, D}, opts), k0 = at::randn({1, T, KV, D}, opts),
                   v0 = at::randn({1, T, KV, D}, opts), g0 = at::randn({1, T, H, D}, opts);
  std::vector<int32_t> cu{0};
  for (int64_t n : lens) cu.push_back(cu.back() + int32_t(n));
  const ops::AttentionLayout var = ops::attention_layout(at::tensor(cu), 1, T, at::kCUDA);
  ASSERT_EQ(var.pad_rows, 0);  // not without HS_ATTENTION_PADDED=1
  ops::AttentionLayout pad = var;
  ASSERT_TRUE(ops::pad_samples(pad, 10.0));
  auto run = [&](const ops::AttentionLayout& layout) {
    at::Tensor q = leaf(q0), k = leaf(k0), v = leaf(v0);
    at::Tensor o = ops::attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), layout).transpose(1, 2);
    torch::autograd::backward({o}, {g0});
    return std::vector<at::Tensor>{o.detach(), q.grad(), k.grad(), v.grad()};
  };
  const auto a = run(pad), b = run(var);
  // float64, one sample at a time.
  std::vector<at::Tensor> ref(4);
  std::vector<std::vector<at::Tensor>> parts(4);
  for (size_t i = 0; i < lens.size(); ++i) {
    auto sl = [&](const at::Tensor& t) {
      return t.narrow(1, cu[i], lens[i]).to(at::kCPU, at::kDouble).transpose(1, 2).detach().requires_grad_(true);
    };
    at::Tensor q = sl(q0), k = sl(k0), v = sl(v0);
    at::Tensor o = at::scaled_dot_product_attention(q, k.repeat_interleave(H / KV, 1), v.repeat_interleave(H / KV, 1),
                                                    {}, 0.0, true);
    o.backward(g0.narrow(1, cu[i], lens[i]).to(at::kCPU, at::kDouble).transpose(1, 2));
    for (auto [j, t] : {std::pair{0, o.detach()}, {1, q.grad()}, {2, k.grad()}, {3, v.grad()}})
      parts[size_t(j)].push_back(t.transpose(1, 2));
  }
  const char* names[] = {"o", "dq", "dk", "dv"};
  for (size_t j = 0; j < 4; ++j) {
    const at::Tensor r = at::cat(parts[j], 1);
    const double e_pad = rel_err(a[j], r), e_var = rel_err(b[j], r);
    std::printf("[ measured ] padded %s: %.3e, varlen %.3e rel. L2 vs float64\n", names[j], e_pad, e_var);
    EXPECT_LT(e_pad, 1e-2) << names[j];
    EXPECT_LT(e_pad, 1.5 * e_var + 1e-3) << names[j];
  }
}

TEST(FastPath, LoraMlpMatchesFloat64AndPeft) {
  REQUIRE_FAST_PATH();
  const int64_t N = 333, H = 256, I = 704, r = 8;
  auto cuda = at::TensorOptions().device(at::kCUDA);
  auto x = at::randn({N, H}, cuda).to(at::kBFloat16);
  auto proj = [&](int64_t out, int64_t in, double s) {
    return ops::LoraProj{(at::randn({out, in}, cuda) * 0.06).to(at::kBFloat16),
                         at::Tensor(),
                         at::randn({r, in}, cuda) * 0.06,
                         at::randn({out, r}, cuda) * 0.06,
                         s,
                         0.0};
  };
  ops::LoraProj gate = proj(I, H, 2.0), up = proj(I, H, 2.0), down = proj(H, I, 0.5);
  auto g = at::randn({N, H}, cuda).to(at::kBFloat16);

  // float64 reference.
  auto d = [](const at::Tensor& t) { return t.to(at::kDouble); };
  auto xl = leaf(d(x));
  std::vector<at::Tensor> leaves64;
  auto lin64 = [&](const at::Tensor& in, const ops::LoraProj& p) {
    auto a = leaf(d(p.a)), b = leaf(d(p.b));
    leaves64.push_back(a), leaves64.push_back(b);
    return at::mm(in, d(p.weight).t()) + p.scaling * at::mm(at::mm(in, a.t()), b.t());
  };
  auto g64 = lin64(xl, gate);  // one call per statement: the leaves' order is gate, up, down
  auto u64 = lin64(xl, up);
  auto y64 = lin64(at::silu(g64) * u64, down);
  torch::autograd::backward({y64}, {d(g)});

  // The fast function and the reference composition (three PEFT projections around HF's SwiGLU).
  auto run = [&](bool fast) {
    std::vector<at::Tensor> ls;
    auto xf = leaf(x);
    auto with_leaves = [&](ops::LoraProj p) {
      p.a = leaf(p.a), p.b = leaf(p.b);
      ls.push_back(p.a), ls.push_back(p.b);
      return p;
    };
    ops::LoraProj gf = with_leaves(gate), uf = with_leaves(up), df = with_leaves(down);
    at::Tensor y;
    if (fast) {
      EXPECT_TRUE(ops::lora_mlp_has_fast_path(xf, gf, uf, df, true));
      y = ops::lora_mlp_fast(xf, gf, uf, df);
    } else {
      auto ref = [&](const at::Tensor& in, const ops::LoraProj& p) {
        return ops::lora_linear_reference(in, p.weight, p.bias, p.a, p.b, p.scaling, 0.0, true);
      };
      auto gr = ref(xf, gf);
      auto ur = ref(xf, uf);
      y = ref(ops::swiglu_reference(gr, ur), df);
    }
    torch::autograd::backward({y}, {g});
    std::vector<at::Tensor> out{y.detach(), xf.grad()};
    for (auto& l : ls) out.push_back(l.grad());
    return out;
  };
  auto fast = run(true), peft = run(false);
  std::vector<at::Tensor> want{y64.detach(), xl.grad()};
  for (auto& l : leaves64) want.push_back(l.grad());
  const char* names[] = {"y", "dx", "dA_gate", "dB_gate", "dA_up", "dB_up", "dA_down", "dB_down"};
  for (size_t i = 0; i < want.size(); ++i) {
    const double fe = rel_err(fast[i], want[i]), pe = rel_err(peft[i], want[i]);
    std::printf("mlp %-7s: fast %.2e, PEFT formula %.2e (rel. L2 vs float64)\n", names[i], fe, pe);
    EXPECT_LT(fe, 2e-2) << names[i];
    EXPECT_LT(fe, 3 * pe + 5e-3) << names[i];
    if (i >= 2) {
      EXPECT_EQ(fast[i].scalar_type(), at::kFloat) << names[i];
    }
  }
}

// q, k and v as one function (one GEMM over the three bases' rows, one x [A_q; A_k; A_v]^T, one dX GEMM)
// against float64 and against three separate PEFT-formula projections; GQA widths, with and without
// biases, weights back to back in one buffer (the view Model::load makes on CUDA) and apart (a copy).
TEST(FastPath, LoraQkvMatchesFloat64AndPeft) {
  REQUIRE_FAST_PATH();
  const int64_t N = 517, H = 384, Q = 384, KV = 128, r = 16;
  const double s = 2.0;
  auto cuda = at::TensorOptions().device(at::kCUDA);
  for (bool with_bias : {false, true})
    for (bool adjacent : {false, true}) {
      at::manual_seed(7);
      auto x = at::randn({N, H}, cuda).to(at::kBFloat16);
      at::Tensor wall = (at::randn({Q + 2 * KV, H}, cuda) * 0.05).to(at::kBFloat16);
      std::vector<ops::LoraProj> ps;
      for (auto [off, out] : {std::pair<int64_t, int64_t>{0, Q}, {Q, KV}, {Q + KV, KV}}) {
        at::Tensor w = adjacent ? wall.narrow(0, off, out) : wall.narrow(0, off, out).clone();
        at::Tensor b = with_bias ? (at::randn({out}, cuda) * 0.1).to(at::kBFloat16) : at::Tensor();
        ps.push_back({w, b, at::randn({r, H}, cuda) * 0.05, at::randn({out, r}, cuda) * 0.05, s, 0.0});
      }
      auto g = at::randn({N, Q + 2 * KV}, cuda).to(at::kBFloat16);

      // float64 reference.
      auto d = [](const at::Tensor& t) { return t.to(at::kDouble); };
      auto x64 = leaf(d(x));
      std::vector<at::Tensor> leaves64, ys64;
      for (const auto& p : ps) {
        auto a = leaf(d(p.a)), b = leaf(d(p.b));
        leaves64.push_back(a), leaves64.push_back(b);
        auto y = at::mm(x64, d(p.weight).t()) + s * at::mm(at::mm(x64, a.t()), b.t());
        ys64.push_back(with_bias ? y + d(p.bias) : y);
      }
      auto y64 = at::cat(ys64, 1);
      torch::autograd::backward({y64}, {d(g)});

      auto run = [&](bool fast) {
        auto xf = leaf(x);
        std::vector<ops::LoraProj> qs = ps;
        std::vector<at::Tensor> ls;
        for (auto& p : qs) {
          p.a = leaf(p.a), p.b = leaf(p.b);
          ls.push_back(p.a), ls.push_back(p.b);
        }
        at::Tensor y;
        if (fast) {
          EXPECT_TRUE(ops::lora_qkv_has_fast_path(xf, qs[0], qs[1], qs[2], true));
          y = ops::lora_qkv_fast(xf, qs[0], qs[1], qs[2]);
        } else {
          std::vector<at::Tensor> ys;
          for (const auto& p : qs)
            ys.push_back(ops::lora_linear_reference(xf, p.weight, p.bias, p.a, p.b, p.scaling, 0.0, true));
          y = at::cat(ys, 1);
        }
        torch::autograd::backward({y}, {g});
        std::vector<at::Tensor> out{y.detach(), xf.grad()};
        for (auto& l : ls) out.push_back(l.grad());
        return out;
      };
      auto fast = run(true), peft = run(false);
      std::vector<at::Tensor> want{y64.detach(), x64.grad()};
      for (auto& l : leaves64) want.push_back(l.grad());
      const char* names[] = {"y", "dx", "dA_q", "dB_q", "dA_k", "dB_k", "dA_v", "dB_v"};
      for (size_t i = 0; i < want.size(); ++i) {
        const double fe = rel_err(fast[i], want[i]), pe = rel_err(peft[i], want[i]);
        std::printf("qkv %-5s bias=%d adjacent=%d: fast %.2e, PEFT formula %.2e\n", names[i], int(with_bias),
                    int(adjacent), fe, pe);
        EXPECT_LT(fe, 8e-3) << names[i] << " bias=" << with_bias << " adjacent=" << adjacent;
        EXPECT_LT(fe, 3 * pe + 5e-3) << names[i];
        if (i >= 2) {
          EXPECT_EQ(fast[i].scalar_type(), at::kFloat) << names[i];
        }
      }
      // Unequal scalings are not fused (the caller falls back to three projections).
      ops::LoraProj other = ps[1];
      other.scaling = 1.0;
      other.a = leaf(other.a);
      EXPECT_FALSE(ops::lora_qkv_has_fast_path(x, ps[0], other, ps[2], true));
    }
}

// gate and up back to back in one buffer (Model::load's layout on CUDA): the fused MLP reads them as one
// view and gives the numbers it gives on separate weights.
TEST(FastPath, LoraMlpAdjacentGateUpMatchesSeparate) {
  REQUIRE_FAST_PATH();
  const int64_t N = 129, H = 256, I = 512, r = 8;
  auto cuda = at::TensorOptions().device(at::kCUDA);
  at::manual_seed(3);
  auto x = at::randn({N, H}, cuda).to(at::kBFloat16);
  at::Tensor wgu = (at::randn({2 * I, H}, cuda) * 0.06).to(at::kBFloat16);
  auto lora = [&](at::Tensor w, double s) {
    return ops::LoraProj{w, at::Tensor(), (at::randn({r, w.size(1)}, cuda) * 0.06).requires_grad_(true),
                         (at::randn({w.size(0), r}, cuda) * 0.06).requires_grad_(true), s, 0.0};
  };
  ops::LoraProj gate = lora(wgu.narrow(0, 0, I), 2.0), up = lora(wgu.narrow(0, I, I), 2.0),
                down = lora((at::randn({H, I}, cuda) * 0.06).to(at::kBFloat16), 0.5);
  auto g = at::randn({N, H}, cuda).to(at::kBFloat16);
  auto run = [&](bool adjacent) {
    ops::LoraProj gf = gate, uf = up, df = down;
    if (!adjacent) gf.weight = gate.weight.clone(), uf.weight = up.weight.clone();
    std::vector<at::Tensor> ls;
    for (ops::LoraProj* p : {&gf, &uf, &df}) {
      p->a = leaf(p->a), p->b = leaf(p->b);
      ls.push_back(p->a), ls.push_back(p->b);
    }
    auto xf = leaf(x);
    auto y = ops::lora_mlp_fast(xf, gf, uf, df);
    torch::autograd::backward({y}, {g});
    std::vector<at::Tensor> out{y.detach(), xf.grad()};
    for (auto& l : ls) out.push_back(l.grad());
    return out;
  };
  auto a = run(true), b = run(false);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i], b[i])) << "output " << i;
}

// The seam: ops::rope and ops::swiglu dispatch to kernels/ on CUDA (through autograd) and give the
// reference's numbers: RoPE bit for bit, SwiGLU within one bf16 ulp in at most 0.1% of elements.
TEST(FastPath, RopeSeamMatchesReference) {
  REQUIRE_FAST_PATH();
  hs::io::HfConfig c;
  c.head_dim = 64;
  c.rope_theta = 500000;
  const int64_t B = 2, T = 300, H = 4, D = 64;
  auto table = ops::rope_table(c, 512, at::kCUDA);
  auto pos = at::randint(0, 512, {B, T}, at::TensorOptions().dtype(at::kLong).device(at::kCUDA));
  auto buf = at::randn({B, T, H, D}, at::kCUDA).to(at::kBFloat16);
  auto g = at::randn({B, H, T, D}, at::kCUDA).to(at::kBFloat16);
  auto xk = leaf(buf), xr = leaf(buf);
  ASSERT_TRUE(ops::rope_has_kernel(xk.transpose(1, 2), table, pos));
  auto yk = ops::rope(xk.transpose(1, 2), table, pos);
  auto yr = ops::rope_reference(xr.transpose(1, 2), table, pos);
  torch::autograd::backward({yk}, {g});
  torch::autograd::backward({yr}, {g});
  EXPECT_TRUE(at::equal(yk, yr));
  EXPECT_TRUE(at::equal(xk.grad(), xr.grad()));
  // Not a [B, T, H, D] buffer (a dense [B, H, T, D] tensor, or q of the fused q/k/v output, a slice of a
  // wider row): the kernel runs on a dense copy, same numbers.
  for (bool wide : {false, true}) {
    const at::Tensor base = wide ? at::randn({B, T, H * D + 96}, at::kCUDA).to(at::kBFloat16)
                                 : at::randn({B, H, T, D}, at::kCUDA).to(at::kBFloat16);
    auto view = [&](const at::Tensor& t) {
      return wide ? t.narrow(2, 0, H * D).view({B, T, H, D}).transpose(1, 2) : t;
    };
    auto bk = leaf(base), br = leaf(base);
    ASSERT_TRUE(ops::rope_has_kernel(view(bk), table, pos));
    auto y1 = ops::rope(view(bk), table, pos), y2 = ops::rope_reference(view(br), table, pos);
    torch::autograd::backward({y1}, {g});
    torch::autograd::backward({y2}, {g});
    EXPECT_TRUE(at::equal(y1, y2)) << "wide=" << wide;
    EXPECT_TRUE(at::equal(bk.grad(), br.grad())) << "wide=" << wide;
  }
  EXPECT_FALSE(ops::rope_has_kernel(at::randn({B, H, T, 2 * D}, at::kCUDA).to(at::kBFloat16).slice(3, 0, 2 * D, 2),
                                    table, pos));  // head_dim not contiguous
}

TEST(FastPath, SwigluSeamMatchesReference) {
  REQUIRE_FAST_PATH();
  auto gate = (at::randn({257, 1000}, at::kCUDA) * 3).to(at::kBFloat16);
  auto up = at::randn({257, 1000}, at::kCUDA).to(at::kBFloat16);
  auto dh = at::randn({257, 1000}, at::kCUDA).to(at::kBFloat16);
  auto gk = leaf(gate), uk = leaf(up), gr = leaf(gate), ur = leaf(up);
  ASSERT_TRUE(ops::swiglu_has_kernel(gk, uk));
  auto yk = ops::swiglu(gk, uk), yr = ops::swiglu_reference(gr, ur);
  torch::autograd::backward({yk}, {dh});
  torch::autograd::backward({yr}, {dh});
  for (auto [name, a, b] : {std::tuple{"h", yk, yr}, std::tuple{"dgate", gk.grad(), gr.grad()},
                            std::tuple{"dup", uk.grad(), ur.grad()}}) {
    auto af = a.to(at::kFloat), bf = b.to(at::kFloat);
    auto ulp = (bf.abs() * std::ldexp(1.0, -7)).clamp_min(1e-30);  // one bf16 ulp is at most 2^-7 relative
    const int64_t differ = (af != bf).sum().item<int64_t>();
    EXPECT_TRUE(((af - bf).abs() <= ulp).all().item<bool>()) << name;
    EXPECT_LE(differ, a.numel() / 1000) << name;
    std::printf("swiglu %s: %lld of %lld elements differ from the reference\n", name, (long long)differ,
                (long long)a.numel());
  }
}

TEST(FastPath, LinearCrossEntropyMatchesFloat64AndHf) {
  REQUIRE_FAST_PATH();
  // Several chunks: 2^27 / 150000 = 894 rows per chunk, 2000 rows.
  const int64_t n = 2000, h = 64, vocab = 150000;
  auto cuda = at::TensorOptions().device(at::kCUDA);
  auto hidden = (at::randn({n, h}, cuda) * 2).to(at::kBFloat16);
  auto weight = (at::randn({vocab, h}, cuda) * 0.3).to(at::kBFloat16);
  auto targets = at::randint(0, vocab, {n}, cuda.dtype(at::kLong));
  const double scale = 1.0 / 37.0;  // the trainer divides the sum by the step's target count

  auto h64 = hidden.to(at::kDouble), w64 = weight.to(at::kDouble);
  auto logits = at::mm(h64, w64.t());
  auto lse = at::logsumexp(logits, 1);
  const double loss64 = (lse - logits.gather(1, targets.view({-1, 1})).squeeze(1)).sum().item<double>();
  auto p = at::softmax(logits, 1);
  p.scatter_add_(1, targets.view({-1, 1}), at::full({n, 1}, -1.0, p.options()));
  auto dh64 = at::mm(p, w64) * scale, dw64 = at::mm(p.t(), h64) * scale;
  logits = p = at::Tensor();

  auto hf = leaf(hidden), wf = leaf(weight);
  ASSERT_TRUE(ops::linear_cross_entropy_has_fast_path(hf, wf));
  ops::LossSum fast = ops::linear_cross_entropy_fast(hf, wf, targets);
  EXPECT_EQ(fast.count, n);
  (fast.sum * scale).backward();
  auto hr = leaf(hidden), wr = leaf(weight);
  ops::LossSum ref = ops::cross_entropy_sum(ops::linear(hr, wr, at::Tensor()), targets);  // HF: bf16 logits
  (ref.sum * scale).backward();

  const double lf = fast.sum.item<double>(), lr = ref.sum.item<double>();
  std::printf("loss: fast %.6f, HF formula %.6f, float64 %.6f\n", lf, lr, loss64);
  // Same bf16 logits, float32 log-sum-exp: only the summation order differs from HF's formula.
  EXPECT_LT(std::abs(lf - lr) / std::abs(lr), 2e-6);
  EXPECT_LT(std::abs(lf - loss64) / loss64, 5e-3);  // bf16 logits vs float64
  for (auto [name, got, hf_got, want] :
       {std::tuple{"dh", hf.grad(), hr.grad(), dh64}, std::tuple{"dW", wf.grad(), wr.grad(), dw64}}) {
    const double fast_err = rel_err(got, want), hf_err = rel_err(hf_got, want);
    std::printf("%s: fast %.2e, HF formula %.2e (rel. L2 vs float64)\n", name, fast_err, hf_err);
    EXPECT_LT(fast_err, 1e-2) << name;
    EXPECT_LT(fast_err, 2 * hf_err + 1e-3) << name;
    EXPECT_LT(rel_err(got, hf_got), 1e-2) << name;
  }
}

TEST(FastPath, LinearCrossEntropyWithoutGradMatchesReference) {
  REQUIRE_FAST_PATH();
  auto cuda = at::TensorOptions().device(at::kCUDA);
  auto hidden = at::randn({300, 32}, cuda).to(at::kBFloat16);
  auto weight = at::randn({1000, 32}, cuda).to(at::kBFloat16);
  auto targets = at::randint(0, 1000, {300}, cuda.dtype(at::kLong));
  at::NoGradGuard no_grad;
  EXPECT_FALSE(ops::linear_cross_entropy_has_fast_path(hidden, weight));  // eval keeps the reference numbers
  ops::LossSum r = ops::linear_cross_entropy(hidden, weight, targets);
  EXPECT_EQ(r.count, 300);
}

}  // namespace
