// Unit tests of the QLoRA base (quant/nf4_linear.h) and its hooks: the model's projection factory (called
// once per projection with the right names and shapes; a factory building DenseLinear gives the default
// model), Nf4Linear's forward and backward (= linear on the dequantized weight, dX through it, no gradient
// for the base, LoRA on top gets the gradients it gets on the dense dequantized base), the NF4 factory
// (quantize at load; transformers' pre-quantized layout read back to the same weights; Model::load refusing a
// pre-quantized folder without it) and config.json's quantization_config checks. transformers + PEFT +
// bitsandbytes parity is in tests/parity/qlora_parity.py.
#include <ATen/core/grad_mode.h>
#include <ftw.h>

#include <filesystem>
#include <set>

#include "core/error.h"
#include "io/file.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "lora/lora.h"
#include "model/model.h"
#include "model/registry.h"
#include "model/tensor_io.h"
#include "quant/nf4.h"
#include "quant/nf4_linear.h"
#include "support/test_support.h"

namespace {
namespace fs = std::filesystem;
using namespace hs::model;

double max_rel(const at::Tensor& ours, const at::Tensor& ref) {
  at::Tensor a = ours.to(at::kDouble), b = ref.to(at::kDouble);
  return (a - b).norm().item<double>() / std::max(b.norm().item<double>(), 1e-300);
}

const char* kConfig = R"({"model_type":"qwen2","hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,
    "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":40,"rms_norm_eps":1e-5)";
const char* kQuantConfig = R"(,"quantization_config":{"_load_in_4bit":true,"_load_in_8bit":false,
    "bnb_4bit_compute_dtype":"bfloat16","bnb_4bit_quant_storage":"uint8","bnb_4bit_quant_type":"nf4",
    "bnb_4bit_use_double_quant":true,"llm_int8_skip_modules":null,"load_in_4bit":true,"load_in_8bit":false,
    "quant_method":"bitsandbytes"})";

// A tiny qwen2 (q/k/v biases; down_proj's in = 96, so its 64-blocks cross rows) with random weights, written
// dense, and optionally as transformers' pre-quantized layout (the projections NF4, quantization_config).
class Nf4Model : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = hs::test::temp_dir("hs-nf4-linear");
    dense_ = dir_ + "/dense";
    pre_ = dir_ + "/pre";
    auto c = hs::io::parse_hf_config(std::string(kConfig) + "}", "test");
    std::vector<HostTensor> dense, pre;
    auto add = [&](const std::string& n, at::Tensor t, bool quantize = false) {
      dense.push_back(to_host(n, t));
      if (!quantize) {
        pre.push_back(to_host(n, t));
        return;
      }
      for (auto& [name, part] : hs::quant::nf4_tensors_for_save(n, hs::quant::quantize_nf4(t)))
        pre.push_back(to_host(name, part));
    };
    add(names::tensor(Slot::embed), at::randn({40, 64}));
    add(names::tensor(Slot::final_norm), at::randn({64}) * 0.1 + 1);
    add(names::tensor(Slot::lm_head), at::randn({40, 64}) * 0.2);
    for (int i = 0; i < 2; ++i) {
      add(names::tensor(Slot::input_norm, i), at::randn({64}) * 0.1 + 1);
      add(names::tensor(Slot::post_attn_norm, i), at::randn({64}) * 0.1 + 1);
      for (Proj p : kAllProjs) {
        auto [out, in] = proj_shape(c, p);
        add(names::weight(i, p), at::randn({out, in}) / std::sqrt(double(in)), true);
        if (proj_has_bias(c, p)) add(names::bias(i, p), at::randn({out}) * 0.1);
      }
    }
    write(dense_, dense, std::string(kConfig) + "}");
    write(pre_, pre, std::string(kConfig) + kQuantConfig + "}");
  }
  void TearDown() override {
    nftw(
        dir_.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 8,
        FTW_DEPTH | FTW_PHYS);
  }
  static void write(const std::string& dir, const std::vector<HostTensor>& host, const std::string& config) {
    hs::io::make_dirs(dir);
    std::vector<hs::io::TensorRef> refs;
    for (const auto& h : host) refs.push_back(h.ref());
    hs::io::write_safetensors(dir + "/model.safetensors", refs, {{"format", "pt"}});
    hs::io::write_file_atomic(dir + "/config.json", config);
  }
  static LoadOptions nf4(const std::string& dir, bool quantize) {
    return hs::quant::nf4_load_options({}, hs::io::load_hf_config(dir), quantize);
  }
  static at::Tensor logits(const Model& m) {
    at::NoGradGuard g;
    Inputs in;
    in.input_ids = at::arange(0, 12, at::kLong).remainder(40).view({1, 12});
    return m.forward(in);
  }
  std::string dir_, dense_, pre_;
};

TEST_F(Nf4Model, FactorySeesEachProjectionAndDenseFactoryEqualsDefault) {
  std::vector<ProjectionSource> seen;
  LoadOptions o;
  o.projection_factory = [&](const ProjectionSource& s) -> std::shared_ptr<Projection> {
    seen.push_back(s);
    return std::make_shared<DenseLinear>(s.load_weight(), s.load_bias());
  };
  Model m = Model::load(dense_, o);
  ASSERT_EQ(seen.size(), 14u);
  for (size_t k = 0; k < seen.size(); ++k) {
    const ProjectionSource& s = seen[k];
    const int layer = int(k / 7);
    const Proj p = kAllProjs[k % 7];
    EXPECT_EQ(s.layer, layer);
    EXPECT_EQ(s.proj, p);
    EXPECT_EQ(s.weight_name, names::weight(layer, p));
    EXPECT_EQ(s.bias_name, proj_has_bias(m.config(), p) ? names::bias(layer, p) : "");
    auto [out, in] = proj_shape(m.config(), p);
    EXPECT_EQ(s.shape, (std::vector<int64_t>{out, in}));
    EXPECT_EQ(s.dtype, at::kFloat);
  }
  EXPECT_TRUE(at::equal(logits(m), logits(Model::load(dense_))));
}

TEST_F(Nf4Model, Nf4LinearIsLinearOnTheDequantizedWeightForwardAndBackward) {
  for (std::vector<int64_t> shape : {std::vector<int64_t>{48, 64}, std::vector<int64_t>{40, 96}}) {
    at::Tensor w = at::randn(shape);
    at::Tensor bias = at::randn({shape[0]});
    auto q = hs::quant::quantize_nf4(w);
    hs::quant::Nf4Linear lin(q, bias);
    at::Tensor wd = hs::quant::dequantize_nf4(q);
    EXPECT_TRUE(at::equal(lin.dequantized(), wd));
    EXPECT_GT(max_rel(wd, w), 1e-3);  // it is quantized
    EXPECT_LT(max_rel(wd, w), 0.2);
    at::Tensor x = at::randn({2, 5, shape[1]}).requires_grad_(true);
    at::Tensor g = at::randn({2, 5, shape[0]});
    at::Tensor y = lin.forward(x, true);
    EXPECT_TRUE(at::equal(y, at::linear(x.detach(), wd, bias)));
    (y * g).sum().backward();
    at::Tensor xr = x.detach().clone().requires_grad_(true);
    (at::linear(xr, wd, bias) * g).sum().backward();
    EXPECT_LT(max_rel(x.grad(), xr.grad()), 1e-6);
    EXPECT_FALSE(lin.weight().packed.grad().defined());
    {
      at::NoGradGuard ng;  // inference: the same numbers without the autograd function
      EXPECT_TRUE(at::equal(lin.forward(x.detach(), false), y.detach()));
    }
    // LoRA on the NF4 base gets the gradients it gets on the dense dequantized base.
    at::Tensor a0 = at::randn({4, shape[1]}) * 0.1, b0 = at::randn({shape[0], 4}) * 0.1;
    auto nf4 = std::make_shared<hs::quant::Nf4Linear>(q, bias);
    auto dense = std::make_shared<DenseLinear>(wd, bias);
    hs::lora::LoraLinear l1(nf4, a0.clone().requires_grad_(true), b0.clone().requires_grad_(true), 2.0, 0);
    hs::lora::LoraLinear l2(dense, a0.clone().requires_grad_(true), b0.clone().requires_grad_(true), 2.0, 0);
    at::Tensor x1 = at::randn({3, shape[1]});
    (l1.forward(x1, true) * g[0].slice(0, 0, 3)).sum().backward();
    (l2.forward(x1, true) * g[0].slice(0, 0, 3)).sum().backward();
    EXPECT_LT(max_rel(l1.a.grad(), l2.a.grad()), 1e-6);
    EXPECT_LT(max_rel(l1.b.grad(), l2.b.grad()), 1e-6);
    EXPECT_EQ(l1.dense(), nullptr);
    EXPECT_EQ(l1.packed_base(), nf4.get());
    // A bf16 NF4 base under float32 LoRA masters: the output stays bf16, as PEFT casts the sum back to the
    // base result's dtype, and equals the dense LoRA's on the dequantized bf16 weight.
    auto q16 = hs::quant::quantize_nf4(w.to(at::kBFloat16));
    auto nf16 = std::make_shared<hs::quant::Nf4Linear>(q16, bias.to(at::kBFloat16));
    auto dense16 = std::make_shared<DenseLinear>(hs::quant::dequantize_nf4(q16), bias.to(at::kBFloat16));
    hs::lora::LoraLinear l3(nf16, a0.clone().requires_grad_(true), b0.clone().requires_grad_(true), 2.0, 0);
    hs::lora::LoraLinear l4(dense16, a0.clone().requires_grad_(true), b0.clone().requires_grad_(true), 2.0, 0);
    at::Tensor x16 = x1.to(at::kBFloat16);
    at::Tensor y3 = l3.forward(x16, true), y4 = l4.forward(x16, true);
    EXPECT_EQ(y3.scalar_type(), at::kBFloat16);
    EXPECT_TRUE(at::equal(y3, y4));
  }
}

TEST_F(Nf4Model, QuantizeAtLoadEqualsTheDenseModelOfItsDequantizedWeights) {
  Model m = Model::load(dense_, nf4(dense_, true));
  Model ref = Model::load(dense_);
  EXPECT_GT(hs::quant::nf4_bytes(m), 0);
  for (int i = 0; i < 2; ++i)
    for (Proj p : kAllProjs) {
      const auto* q = hs::quant::as_nf4(m.layer(i)[p]);
      ASSERT_NE(q, nullptr);
      const DenseLinear* d = ref.layer(i)[p].dense();
      EXPECT_TRUE(at::equal(q->dequantized(), hs::quant::dequantize_nf4(hs::quant::quantize_nf4(d->weight))));
      EXPECT_EQ(q->bias().defined(), d->bias.defined());
      ref.layer(i).proj[size_t(p)] = std::make_shared<DenseLinear>(q->dequantized(), d->bias);
    }
  EXPECT_TRUE(at::equal(logits(m), logits(ref)));
  EXPECT_THROW(m.named_parameters(), hs::Error);  // no dense base weights to list
}

TEST_F(Nf4Model, PreQuantizedFolderReadsBackTheSameWeightsAndNeedsTheFactory) {
  try {
    Model::load(pre_);
    FAIL() << "a pre-quantized folder loaded as dense";
  } catch (const hs::Error& e) {
    EXPECT_NE(e.message().find("quantization_config"), std::string::npos) << e.what();
  }
  // No --quant needed: the folder says what it is.
  Model pre = Model::load(pre_, nf4(pre_, false));
  Model at_load = Model::load(dense_, nf4(dense_, true));
  for (int i = 0; i < 2; ++i)
    for (Proj p : kAllProjs) {
      const auto* a = hs::quant::as_nf4(pre.layer(i)[p]);
      const auto* b = hs::quant::as_nf4(at_load.layer(i)[p]);
      ASSERT_TRUE(a && b);
      EXPECT_TRUE(at::equal(a->weight().packed, b->weight().packed));
      EXPECT_TRUE(at::equal(a->dequantized(), b->dequantized()));
    }
  EXPECT_TRUE(at::equal(logits(pre), logits(at_load)));
  // Without a pre-quantized folder and without quantize, the options are untouched.
  EXPECT_FALSE(nf4(dense_, false).projection_factory);
}

TEST(Nf4Config, AcceptsBitsandbytesNf4DoubleQuantAndNamesTheKeyOtherwise) {
  auto parse = [](const std::string& quant) {
    return hs::io::parse_hf_config(std::string(kConfig) + quant + "}", "config.json");
  };
  EXPECT_FALSE(parse("").quantization.nf4);
  auto ok = parse(kQuantConfig);
  EXPECT_TRUE(ok.quantization.nf4);
  EXPECT_EQ(ok.quantization.compute_dtype, "bfloat16");
  EXPECT_TRUE(parse(R"(,"quantization_config":{"quant_method":"bitsandbytes","load_in_4bit":true,
      "bnb_4bit_quant_type":"nf4","bnb_4bit_use_double_quant":true,"bnb_4bit_compute_dtype":"float16",
      "llm_int8_skip_modules":["lm_head","multi_modal_projector","merger","modality_projection"]})")
                  .quantization.nf4);
  const std::string bnb = R"("quant_method":"bitsandbytes")";
  const std::pair<std::string, std::string> bad[] = {
      {R"({"quant_method":"gptq","bits":4})", "quantization_config.quant_method"},
      {R"({"quant_method":"awq"})", "quantization_config.quant_method"},
      {"{" + bnb + R"(,"load_in_8bit":true})", "quantization_config.load_in_8bit"},
      {"{" + bnb + R"(,"load_in_4bit":false})", "quantization_config.load_in_4bit"},
      {"{" + bnb + R"(,"load_in_4bit":true,"bnb_4bit_quant_type":"fp4","bnb_4bit_use_double_quant":true})",
       "quantization_config.bnb_4bit_quant_type"},
      {"{" + bnb + R"(,"load_in_4bit":true,"bnb_4bit_use_double_quant":true})",
       "quantization_config.bnb_4bit_quant_type"},  // the default type is fp4
      {"{" + bnb + R"(,"load_in_4bit":true,"bnb_4bit_quant_type":"nf4"})",
       "quantization_config.bnb_4bit_use_double_quant"},
      {"{" + bnb + R"(,"load_in_4bit":true,"bnb_4bit_quant_type":"nf4","bnb_4bit_use_double_quant":true,
          "bnb_4bit_compute_dtype":"int8"})",
       "quantization_config.bnb_4bit_compute_dtype"},
      {"{" + bnb + R"(,"load_in_4bit":true,"bnb_4bit_quant_type":"nf4","bnb_4bit_use_double_quant":true,
          "llm_int8_skip_modules":["lm_head","model.layers.3.self_attn"]})",
       "quantization_config.llm_int8_skip_modules"},
      {R"("nf4")", "quantization_config"},
  };
  for (const auto& [q, key] : bad) {
    try {
      parse(R"(,"quantization_config":)" + q);
      ADD_FAILURE() << "accepted " << q;
    } catch (const hs::Error& e) {
      EXPECT_NE(e.where().find(key), std::string::npos) << q << " -> " << e.what();
      EXPECT_NE(e.where().find("config.json"), std::string::npos) << e.what();
      EXPECT_FALSE(e.hint_text().empty()) << e.what();
    }
  }
}

}  // namespace
