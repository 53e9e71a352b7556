// Unit tests of the decoder's ops, name registry, loading errors, loss semantics, KV cache and the LoRA
// adapter contract. References are computed here in float64 with plain loops from the formulas (RMSNorm,
// RoPE incl. llama3 scaling, softmax attention with GQA and block-diagonal causal masks, cross-entropy);
// transformers/PEFT parity is in tests/parity/model_parity.py.
#include <ATen/core/grad_mode.h>
#include <ftw.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "lora/lora.h"
#include "model/model.h"
#include "model/ops.h"
#include "model/registry.h"
#include "model/tensor_io.h"
#include "support/test_support.h"

namespace {
namespace fs = std::filesystem;
using namespace hs::model;

double max_rel(const at::Tensor& ours, const at::Tensor& ref) {
  at::Tensor a = ours.to(at::kDouble), b = ref.to(at::kDouble);
  return (a - b).norm().item<double>() / std::max(b.norm().item<double>(), 1e-300);
}

hs::io::HfConfig small_config(const std::string& extra = "") {
  std::string text = R"({"model_type":"llama","hidden_size":16,"intermediate_size":24,"num_hidden_layers":2,
      "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":40,"rms_norm_eps":1e-5)" +
                     extra + "}";
  return hs::io::parse_hf_config(text, "test-config");
}

TEST(ModelOps, RmsNormMatchesFloat64Formula) {
  at::Tensor x = at::randn({3, 5, 16}, at::kDouble);
  at::Tensor w = at::randn({16}, at::kDouble);
  at::Tensor ref = at::empty_like(x);
  auto xa = x.accessor<double, 3>();
  auto ra = ref.accessor<double, 3>();
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 5; ++j) {
      double ss = 0;
      for (int k = 0; k < 16; ++k) ss += xa[i][j][k] * xa[i][j][k];
      double r = 1.0 / std::sqrt(ss / 16 + 1e-6);
      for (int k = 0; k < 16; ++k) ra[i][j][k] = w[k].item<double>() * xa[i][j][k] * r;
    }
  EXPECT_LT(max_rel(ops::rms_norm(x.to(at::kFloat), w.to(at::kFloat), 1e-6), ref), 1e-6);
  // bf16 input: computed in float32, cast back: close to the float64 value at bf16 precision.
  at::Tensor b = ops::rms_norm(x.to(at::kBFloat16), w.to(at::kBFloat16), 1e-6);
  EXPECT_EQ(b.scalar_type(), at::kBFloat16);
  EXPECT_LT(max_rel(b, ref), 1e-2);
}

TEST(ModelOps, RopeInverseFrequencies) {
  // default and linear
  auto c = small_config(R"(,"rope_theta":10000.0)");
  at::Tensor f = ops::rope_inv_freq(c);
  ASSERT_EQ(f.size(0), 2);  // head_dim 4
  EXPECT_NEAR(f[0].item<double>(), 1.0, 1e-7);
  EXPECT_NEAR(f[1].item<double>(), std::pow(10000.0, -0.5), 1e-9);
  auto lin = small_config(R"(,"rope_scaling":{"type":"linear","factor":4.0})");
  EXPECT_NEAR(ops::rope_inv_freq(lin)[1].item<double>(), std::pow(10000.0, -0.5) / 4, 1e-9);
  // llama3 (Llama 3.1 paper's rule), float64 reference
  auto l3 = hs::io::parse_hf_config(R"({"model_type":"llama","hidden_size":64,"intermediate_size":8,
      "num_hidden_layers":1,"num_attention_heads":2,"vocab_size":8,"rope_theta":500000.0,
      "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
      "original_max_position_embeddings":64}})",
                                    "l3");
  at::Tensor g = ops::rope_inv_freq(l3);
  ASSERT_EQ(g.size(0), 16);
  int branches[3] = {0, 0, 0};
  for (int i = 0; i < 16; ++i) {
    double inv = 1.0 / std::pow(500000.0, 2.0 * i / 32);
    double wavelen = 2 * M_PI / inv, low = 64.0 / 1.0, high = 64.0 / 4.0, expect;
    if (wavelen < high) {
      expect = inv, branches[0]++;
    } else if (wavelen > low) {
      expect = inv / 8, branches[1]++;
    } else {
      double s = (64.0 / wavelen - 1.0) / (4.0 - 1.0);
      expect = (1 - s) * inv / 8 + s * inv, branches[2]++;
    }
    EXPECT_NEAR(g[i].item<double>() / expect, 1.0, 2e-6) << i;
  }
  EXPECT_GT(branches[0], 0);
  EXPECT_GT(branches[1], 0);
  EXPECT_GT(branches[2], 0);
}

TEST(ModelOps, RopeRotatesHalves) {
  auto c = small_config();
  ops::RopeTable t = ops::rope_table(c, 32, at::kCPU);
  at::Tensor x = at::randn({1, 2, 3, 4});  // [B, H, T, D]
  at::Tensor pos = at::tensor(std::vector<int64_t>{0, 7, 31}).view({1, 3});
  at::Tensor y = ops::rope(x, t, pos);
  at::Tensor inv = ops::rope_inv_freq(c).to(at::kDouble);
  for (int h = 0; h < 2; ++h)
    for (int k = 0; k < 3; ++k) {
      double p = double(pos[0][k].item<int64_t>());
      for (int i = 0; i < 2; ++i) {
        double th = p * inv[i].item<double>();
        double x1 = x[0][h][k][i].item<double>(), x2 = x[0][h][k][i + 2].item<double>();
        EXPECT_NEAR(y[0][h][k][i].item<double>(), x1 * std::cos(th) - x2 * std::sin(th), 1e-5);
        EXPECT_NEAR(y[0][h][k][i + 2].item<double>(), x2 * std::cos(th) + x1 * std::sin(th), 1e-5);
      }
    }
}

// Plain-loop attention in float64: q [B,H,T,D], k/v [B,KV,T,D], allowed(b, i, j).
template <typename Allowed>
at::Tensor reference_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               Allowed allowed) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), KV = k.size(1);
  at::Tensor out = at::zeros({B, H, T, D}, at::kDouble);
  at::Tensor qd = q.to(at::kDouble), kd = k.to(at::kDouble), vd = v.to(at::kDouble);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      int64_t g = h / (H / KV);
      for (int64_t i = 0; i < T; ++i) {
        std::vector<double> s(size_t(T), -INFINITY);
        double mx = -INFINITY;
        for (int64_t j = 0; j < T; ++j)
          if (allowed(b, i, j)) {
            s[size_t(j)] = (qd[b][h][i] * kd[b][g][j]).sum().item<double>() / std::sqrt(double(D));
            mx = std::max(mx, s[size_t(j)]);
          }
        double z = 0;
        for (double& e : s) z += (e = std::exp(e - mx));
        for (int64_t j = 0; j < T; ++j) out[b][h][i] += vd[b][g][j] * (s[size_t(j)] / z);
      }
    }
  return out;
}

TEST(ModelOps, PackedAttentionIsBlockDiagonalCausal) {
  at::Tensor q = at::randn({2, 4, 6, 8}), k = at::randn({2, 2, 6, 8}), v = at::randn({2, 2, 6, 8});
  // row 0: samples [0,2) [2,6); row 1: [6,9) [9,12) as flat indices
  at::Tensor cu = at::tensor(std::vector<int32_t>{0, 2, 6, 9, 12});
  ops::AttentionLayout layout = ops::attention_layout(cu, 2, 6, at::kCPU);
  ASSERT_EQ(layout.bounds, (std::vector<int64_t>{0, 2, 6, 9, 12}));
  EXPECT_EQ(layout.max_seqlen, 4);
  int seg_start[2][6] = {{0, 0, 2, 2, 2, 2}, {0, 0, 0, 3, 3, 3}};
  at::Tensor ref = reference_attention(
      q, k, v, [&](int64_t b, int64_t i, int64_t j) { return j <= i && j >= seg_start[b][i]; });
  EXPECT_LT(max_rel(ops::attention(q, k, v, layout), ref), 1e-5);
  // plain causal rows
  at::Tensor causal = reference_attention(q, k, v, [](int64_t, int64_t i, int64_t j) { return j <= i; });
  EXPECT_LT(max_rel(ops::attention(q, k, v, ops::attention_layout({}, 2, 6, at::kCPU)), causal), 1e-5);
  // one sample per row: no mask needed, same result
  ops::AttentionLayout rows =
      ops::attention_layout(at::tensor(std::vector<int32_t>{0, 6, 12}), 2, 6, at::kCPU);
  EXPECT_TRUE(rows.bounds.empty());
  EXPECT_LT(max_rel(ops::attention(q, k, v, rows), causal), 1e-5);
  // packed position ids restart at each sample
  at::Tensor pos = packed_position_ids(cu, 2, 6);
  EXPECT_EQ(pos[0][2].item<int64_t>(), 0);
  EXPECT_EQ(pos[0][5].item<int64_t>(), 3);
  EXPECT_EQ(pos[1][3].item<int64_t>(), 0);
}

TEST(ModelOps, AttentionLayoutMarksEqualSegments) {
  // One row of 12 cut into three samples of 4: equal segments (B*T/L = 3 rows of 4 on CUDA).
  auto layout = [](std::vector<int32_t> cu, int64_t b, int64_t t) {
    return ops::attention_layout(at::tensor(cu), b, t, at::kCPU);
  };
  EXPECT_EQ(layout({0, 4, 8, 12}, 1, 12).segment_len, 4);
  EXPECT_EQ(layout({0, 3, 6, 9, 12}, 2, 6).segment_len, 3);  // two rows of two samples of 3
  EXPECT_EQ(layout({0, 4, 4, 8, 12}, 1, 12).segment_len, 4);  // an empty sample changes nothing
  EXPECT_EQ(layout({0, 4, 8, 12}, 1, 12).bounds.size(), 4u);  // still packed (CPU: per-sample path)
  EXPECT_EQ(layout({0, 2, 6, 9, 12}, 2, 6).segment_len, 0);   // unequal
  EXPECT_EQ(layout({0, 4, 8, 10, 12}, 1, 12).segment_len, 0);
  EXPECT_EQ(layout({0, 6, 12}, 2, 6).segment_len, 0);  // one per row: no bounds, plain rows
  EXPECT_TRUE(layout({0, 6, 12}, 2, 6).bounds.empty());
}

// Samples padded at their ends to the longest and attended as plain causal rows (ops::pad_samples) give the
// per-sample path's outputs and q/k/v gradients: causal attention never sees the padding after a sample.
TEST(ModelOps, PaddedSamplesMatchPerSampleAttention) {
  at::manual_seed(5);
  auto opts = at::TensorOptions().dtype(at::kDouble);
  // Two packed rows of 12: [0,5) [5,12) | [12,16) [16,19) [19,24); GQA 4 heads over 2.
  at::Tensor cu = at::tensor(std::vector<int32_t>{0, 5, 12, 16, 19, 24});
  const at::Tensor q0 = at::randn({2, 12, 4, 8}, opts), k0 = at::randn({2, 12, 2, 8}, opts),
                   v0 = at::randn({2, 12, 2, 8}, opts), g = at::randn({2, 12, 4, 8}, opts);
  auto run = [&](const ops::AttentionLayout& layout) {
    at::Tensor q = q0.clone().requires_grad_(true), k = k0.clone().requires_grad_(true),
               v = v0.clone().requires_grad_(true);
    at::Tensor o = ops::attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), layout).transpose(1, 2);
    o.backward(g);
    return std::vector<at::Tensor>{o.detach(), q.grad(), k.grad(), v.grad()};
  };
  const ops::AttentionLayout plain = ops::attention_layout(cu, 2, 12, at::kCPU);
  ops::AttentionLayout padded = plain;
  ASSERT_FALSE(ops::pad_samples(padded, 1.5));  // 5 rows x 7 x 8 / 2 = 140 pairs against 74: over 1.5x
  ASSERT_TRUE(ops::pad_samples(padded, 2.0));
  EXPECT_EQ(padded.pad_rows, 5);
  EXPECT_EQ(padded.pad_len, 7);
  EXPECT_EQ(padded.pad_index[12].item<int64_t>(), 2 * 7 + 0);  // token 12 starts the third sample
  const auto a = run(plain), b = run(padded);
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_LT((a[i] - b[i]).abs().max().item<double>(), 1e-12) << "output " << i;
  // Equal samples keep their own path; one sample per row has no bounds to pad.
  ops::AttentionLayout eq = ops::attention_layout(at::tensor(std::vector<int32_t>{0, 6, 12}), 1, 12, at::kCPU);
  EXPECT_FALSE(ops::pad_samples(eq, 10.0));
  ops::AttentionLayout rows = ops::attention_layout(at::tensor(std::vector<int32_t>{0, 12, 24}), 2, 12, at::kCPU);
  EXPECT_FALSE(ops::pad_samples(rows, 10.0));
}

TEST(ModelOps, AttentionLayoutRefusesBadBoundaries) {
  EXPECT_THROW(ops::attention_layout(at::tensor(std::vector<int32_t>{0, 4, 10}), 2, 6, at::kCPU),
               hs::Error);  // crosses
  EXPECT_THROW(ops::attention_layout(at::tensor(std::vector<int32_t>{0, 6, 11}), 2, 6, at::kCPU),
               hs::Error);  // != B*T
  EXPECT_THROW(ops::attention_layout(at::tensor(std::vector<int32_t>{0, 8, 6, 12}), 2, 6, at::kCPU),
               hs::Error);
}

TEST(ModelOps, CrossEntropySumMatchesFloat64) {
  at::Tensor logits = at::randn({5, 7}, at::kDouble) * 3;
  at::Tensor targets = at::tensor(std::vector<int64_t>{0, 6, 3, 3, 1});
  double ref = 0;
  for (int i = 0; i < 5; ++i) {
    double mx = logits[i].max().item<double>(), z = 0;
    for (int j = 0; j < 7; ++j) z += std::exp(logits[i][j].item<double>() - mx);
    ref += -(logits[i][targets[i].item<int64_t>()].item<double>() - mx - std::log(z));
  }
  ops::LossSum l = ops::cross_entropy_sum(logits.to(at::kFloat), targets);
  EXPECT_EQ(l.count, 5);
  EXPECT_NEAR(l.sum.item<double>() / ref, 1.0, 1e-6);
  ops::LossSum empty = ops::cross_entropy_sum(at::zeros({0, 7}), at::zeros({0}, at::kLong));
  EXPECT_EQ(empty.count, 0);
  EXPECT_EQ(empty.sum.item<double>(), 0.0);
}

// The loss boundary: head + cross-entropy against a float64 log-sum-exp of x W^T, with autograd (one pass)
// and without (eval: chunks of 4096 rows), so the chunked sum is checked on more rows than one chunk.
TEST(ModelOps, LinearCrossEntropyMatchesFloat64InBothModes) {
  const int64_t n = 9000, h = 16, v = 50;
  at::Tensor x = at::randn({n, h}, at::kDouble), w = at::randn({v, h}, at::kDouble) * 0.5;
  at::Tensor t = at::randint(0, v, {n}, at::kLong);
  at::Tensor z = at::matmul(x, w.t());
  const double ref = (at::logsumexp(z, 1) - z.gather(1, t.unsqueeze(1)).squeeze(1)).sum().item<double>();
  {
    at::NoGradGuard no_grad;
    ops::LossSum l = ops::linear_cross_entropy(x.to(at::kFloat), w.to(at::kFloat), t);
    EXPECT_EQ(l.count, n);
    EXPECT_NEAR(l.sum.item<double>() / ref, 1.0, 1e-6);
  }
  at::Tensor wf = w.to(at::kFloat).requires_grad_(true);
  ops::LossSum g = ops::linear_cross_entropy(x.to(at::kFloat), wf, t);
  EXPECT_NEAR(g.sum.item<double>() / ref, 1.0, 1e-6);
  g.sum.backward();
  // d/dW sum_i CE_i = (softmax(z) - onehot(t))^T x
  at::Tensor p = at::softmax(z, 1);
  p.scatter_add_(1, t.unsqueeze(1), -at::ones({n, 1}, at::kDouble));
  at::Tensor dw = at::matmul(p.t(), x);
  EXPECT_LT((wf.grad().to(at::kDouble) - dw).norm().item<double>() / dw.norm().item<double>(), 1e-5);
}

TEST(ModelOps, RmsNormOnCpuIsTheReference) {
  at::Tensor x = at::randn({3, 5, 8}), w = at::rand({8}) + 0.5;
  EXPECT_FALSE(ops::rms_norm_has_kernel(x, w));
  EXPECT_TRUE(at::equal(ops::rms_norm(x, w, 1e-6), ops::rms_norm_reference(x, w, 1e-6)));
}

TEST(Registry, NamesRoundTrip) {
  EXPECT_EQ(names::weight(3, Proj::q), "model.layers.3.self_attn.q_proj.weight");
  EXPECT_EQ(names::bias(0, Proj::down), "model.layers.0.mlp.down_proj.bias");
  EXPECT_EQ(names::lora_a(1, Proj::gate), "base_model.model.model.layers.1.mlp.gate_proj.lora_A.weight");
  EXPECT_EQ(names::tensor(Slot::k_norm, 2), "model.layers.2.self_attn.k_norm.weight");
  EXPECT_EQ(names::tensor(Slot::lm_head), "lm_head.weight");
  for (Proj p : kAllProjs) {
    auto back = names::parse_module(names::module(12, p));
    ASSERT_TRUE(back);
    EXPECT_EQ(back->first, 12);
    EXPECT_EQ(back->second, p);
    EXPECT_EQ(parse_proj(proj_name(p)), p);
  }
  EXPECT_FALSE(names::parse_module("model.layers.x.self_attn.q_proj"));
  EXPECT_FALSE(names::parse_module("model.layers.1.mlp.q_proj"));
  EXPECT_FALSE(parse_proj("lm_head"));
  auto c = small_config();
  EXPECT_EQ(proj_shape(c, Proj::k), (std::pair<int64_t, int64_t>{8, 16}));
  EXPECT_EQ(proj_shape(c, Proj::down), (std::pair<int64_t, int64_t>{16, 24}));
}

// A tiny llama checkpoint written with our writer (random weights), optionally without lm_head.
class TinyModel : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = hs::test::temp_dir("hs-model");
    write(true);
  }
  void TearDown() override {
    // Not std::filesystem::remove_all: the pip LibTorch exports its own copy of it, which crashes when it
    // is the one resolved (see the test's report).
    nftw(
        dir_.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 8,
        FTW_DEPTH | FTW_PHYS);
  }
  void write(bool with_lm_head, const std::string& config_extra = "", std::vector<int64_t> q_shape = {}) {
    auto c = small_config();
    std::vector<HostTensor> host;
    auto add = [&](const std::string& n, std::vector<int64_t> shape, double scale, double offset = 0) {
      host.push_back(to_host(n, at::randn(shape, at::kFloat) * scale + offset));
    };
    add(names::tensor(Slot::embed), {40, 16}, 1.0);
    add(names::tensor(Slot::final_norm), {16}, 0.1, 1.0);
    if (with_lm_head) add(names::tensor(Slot::lm_head), {40, 16}, 0.3);
    for (int i = 0; i < 2; ++i) {
      add(names::tensor(Slot::input_norm, i), {16}, 0.1, 1.0);
      add(names::tensor(Slot::post_attn_norm, i), {16}, 0.1, 1.0);
      for (Proj p : kAllProjs) {
        auto [out, in] = proj_shape(c, p);
        std::vector<int64_t> shape = {out, in};
        if (p == Proj::q && i == 1 && !q_shape.empty()) shape = q_shape;
        add(names::weight(i, p), shape, 0.3);
      }
    }
    std::vector<hs::io::TensorRef> refs;
    for (auto& h : host) refs.push_back(h.ref());
    hs::io::write_safetensors((fs::path(dir_) / "model.safetensors").string(), refs, {{"format", "pt"}});
    hs::io::write_file_atomic(
        (fs::path(dir_) / "config.json").string(),
        R"({"model_type":"llama","hidden_size":16,"intermediate_size":24,"num_hidden_layers":2,
            "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":40,"rms_norm_eps":1e-5)" +
            config_extra + "}");
  }
  std::string dir_;
};

TEST_F(TinyModel, LossCountsOnlyMaskedTargetsAndNeverSampleStarts) {
  Model m = Model::load(dir_);
  EXPECT_FALSE(m.tied());
  at::NoGradGuard no_grad;
  at::Tensor ids = at::randint(0, 40, {1, 8}, at::kLong);
  Inputs in;
  in.input_ids = ids;
  in.cu_seqlens = at::tensor(std::vector<int32_t>{0, 3, 8});
  // mask: token 0 (row start) and token 3 (second sample's start) set on purpose: they must not count.
  at::Tensor mask = at::tensor(std::vector<uint8_t>{1, 1, 0, 1, 1, 0, 1, 1}).view({1, 8});
  ops::LossSum l = m.loss(in, mask);
  EXPECT_EQ(l.count, 4);  // targets 1, 4, 6, 7
  at::Tensor logits = m.forward(in).to(at::kDouble);
  double ref = 0;
  for (int t : {1, 4, 6, 7}) {
    at::Tensor row = logits[0][t - 1];
    ref += -(row[ids[0][t].item<int64_t>()] - row.logsumexp(0)).item<double>();
  }
  EXPECT_NEAR(l.sum.item<double>() / ref, 1.0, 1e-6);
}

TEST_F(TinyModel, KvCacheDecodingEqualsFullForward) {
  Model m = Model::load(dir_);
  at::NoGradGuard no_grad;
  at::Tensor ids = at::randint(0, 40, {1, 10}, at::kLong);
  Inputs full;
  full.input_ids = ids;
  at::Tensor ref = m.forward(full);
  KvCache cache = m.make_cache(1, 10);
  Inputs in;
  in.input_ids = ids.slice(1, 0, 4);  // prefill 4, then a chunk of 3, then one at a time
  std::vector<at::Tensor> parts = {m.forward(in, &cache)};
  in.input_ids = ids.slice(1, 4, 7);
  parts.push_back(m.forward(in, &cache));
  for (int t = 7; t < 10; ++t) {
    in.input_ids = ids.slice(1, t, t + 1);
    parts.push_back(m.forward(in, &cache));
  }
  EXPECT_EQ(cache.length(), 10);
  EXPECT_LT(max_rel(at::cat(parts, 1), ref), 1e-5);
  in.input_ids = ids.slice(1, 0, 1);
  EXPECT_THROW(m.forward(in, &cache), hs::Error);  // full
}

TEST_F(TinyModel, MissingLmHeadMeansTied) {
  write(false);
  Model m = Model::load(dir_);
  EXPECT_TRUE(m.tied());
  EXPECT_TRUE(m.lm_head_weight().is_same(m.embed_weight()));
  for (const auto& t : m.named_parameters()) EXPECT_NE(t.name, "lm_head.weight");
}

TEST_F(TinyModel, LoadErrorsNameTheTensor) {
  write(true, "", {9, 16});
  try {
    Model::load(dir_);
    FAIL();
  } catch (const hs::Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.1.self_attn.q_proj.weight"), std::string::npos)
        << e.what();
  }
  write(true, R"(,"attention_bias":true)");
  try {
    Model::load(dir_);
    FAIL();
  } catch (const hs::Error& e) {
    EXPECT_NE(std::string(e.what()).find("q_proj.bias"), std::string::npos) << e.what();
  }
  write(true);
  Model m = Model::load(dir_);
  Inputs in;
  in.input_ids = at::full({1, 3}, 40, at::kLong);
  EXPECT_THROW(m.forward(in), hs::Error);  // id outside the vocabulary
}

TEST_F(TinyModel, LoraContract) {
  Model m = Model::load(dir_);
  hs::lora::LoraConfig c;
  c.r = 2;
  c.alpha = 4;
  c.targets = hs::lora::parse_targets({"v_proj", "q_proj"});
  hs::lora::Adapter a = hs::lora::Adapter::create(m, c, 7);
  auto t = a.trainable();
  ASSERT_EQ(t.size(), 8u);  // 2 layers x (q, v) x (A, B)
  EXPECT_EQ(t[0].name, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  EXPECT_EQ(t[1].name, "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
  EXPECT_EQ(a.num_parameters(), 2 * (2 * 16 + 16 * 2 + 2 * 16 + 8 * 2));
  // A ~ U(-1/sqrt(in), 1/sqrt(in)); B = 0 so the adapted model equals the base at init.
  EXPECT_LE(t[0].tensor.abs().max().item<double>(), 1.0 / std::sqrt(16.0));
  EXPECT_EQ(t[1].tensor.abs().max().item<double>(), 0.0);
  for (const auto& p : t) EXPECT_TRUE(p.tensor.requires_grad());
  for (const auto& p : m.named_parameters()) EXPECT_FALSE(p.tensor.requires_grad()) << p.name;

  // Gradients reach A and B only; the merged weight is W + scaling * B A (computed here by hand).
  at::Tensor ids = at::randint(0, 40, {2, 5}, at::kLong);
  Inputs in;
  in.input_ids = ids;
  {
    at::NoGradGuard g;
    for (const auto& p : t) p.tensor.normal_(0, 0.2);
  }
  ops::LossSum l = m.loss(in, at::ones({2, 5}, at::kByte));
  (l.sum / double(l.count)).backward();
  for (const auto& p : t) EXPECT_GT(p.tensor.grad().abs().sum().item<double>(), 0) << p.name;
  for (const auto& p : m.named_parameters()) EXPECT_FALSE(p.tensor.grad().defined()) << p.name;
  at::Tensor w0 = m.layer(0)[Proj::q].dense()->weight.clone();
  at::Tensor expect = w0.to(at::kDouble) + 2.0 * at::matmul(t[1].tensor.detach().to(at::kDouble),
                                                            t[0].tensor.detach().to(at::kDouble));
  at::Tensor before;
  {
    at::NoGradGuard g;
    before = m.forward(in);
  }
  a.merge_into_model();
  EXPECT_TRUE(a.trainable().empty());
  EXPECT_LT(max_rel(m.layer(0)[Proj::q].dense()->weight, expect), 1e-6);
  at::NoGradGuard g;
  EXPECT_LT(max_rel(m.forward(in), before), 1e-5);
}

TEST(LoraConfig, ScalingTargetsAndConfigJson) {
  hs::lora::LoraConfig c;
  c.r = 16;
  c.alpha = 32;
  EXPECT_DOUBLE_EQ(c.scaling(), 2.0);
  c.use_rslora = true;
  EXPECT_DOUBLE_EQ(c.scaling(), 8.0);
  EXPECT_EQ(hs::lora::parse_targets({"all-linear"}).size(), 7u);
  EXPECT_THROW(hs::lora::parse_targets({"lm_head"}), hs::Error);
  EXPECT_THROW(hs::lora::parse_targets({}), hs::Error);
  c.targets = hs::lora::parse_targets({"o_proj", "q_proj"});
  auto j = nlohmann::json::parse(hs::lora::adapter_config_json(c));
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["task_type"], "CAUSAL_LM");
  EXPECT_EQ(j["r"], 16);
  EXPECT_EQ(j["lora_alpha"], 32);
  EXPECT_EQ(j["use_rslora"], true);
  EXPECT_EQ(j["bias"], "none");
  EXPECT_EQ(j["fan_in_fan_out"], false);
  EXPECT_EQ(j["target_modules"], (std::vector<std::string>{"q_proj", "o_proj"}));
  EXPECT_TRUE(j["modules_to_save"].is_null());
}

}  // namespace
