// `hsloth plan`'s arithmetic against the model's own tensors: parameter counts per term against the numel of
// a model loaded from a config.json + safetensors folder (Llama untied, Qwen3 with qk-norm and tied
// embeddings, Qwen2 with q/k/v biases), LoRA parameters against the adapter the trainer builds, NF4 bytes
// against quantized tensors, optimizer and gradient bytes against AdamW / FlatParams state, the FLOPs basis
// against the trainer's formula on the loaded model, the batch plan's numbers against data::BatchPlan, and
// the memory of two measured H100 runs (bench/results/train_vs_peers_h100_rows.md).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cstdlib>
#include <filesystem>
#include <numeric>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/file.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "lora/lora.h"
#include "model/model.h"
#include "model/registry.h"
#include "model/tensor_io.h"
#include "plan/plan.h"
#include "quant/nf4.h"
#include "quant/nf4_linear.h"
#include "tests/plan/plan_models.h"
#include "train/adamw.h"
#include "train/flat_params.h"

namespace {

using namespace hs;
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

const char* kLlama = R"({"model_type":"llama","hidden_size":32,"intermediate_size":48,"num_hidden_layers":3,
  "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":70,"rms_norm_eps":1e-5,
  "max_position_embeddings":128,"tie_word_embeddings":false})";
const char* kQwen3 = R"({"model_type":"qwen3","hidden_size":32,"intermediate_size":40,"num_hidden_layers":2,
  "num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"vocab_size":90,"rms_norm_eps":1e-6,
  "max_position_embeddings":128,"tie_word_embeddings":true})";
const char* kQwen2 = R"({"model_type":"qwen2","hidden_size":32,"intermediate_size":40,"num_hidden_layers":2,
  "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":90,"rms_norm_eps":1e-6,
  "max_position_embeddings":128,"tie_word_embeddings":false})";

int64_t numel_sum(const std::vector<model::NamedTensor>& ts) {
  int64_t n = 0;
  for (const auto& t : ts) n += t.tensor.numel();
  return n;
}

const plan::Term* find_term(const std::vector<plan::Term>& ts, const std::string& prefix) {
  for (const auto& t : ts)
    if (t.name.rfind(prefix, 0) == 0) return &t;
  return nullptr;
}

plan::Samples rows(int n, int32_t len) {
  plan::Samples s;
  s.lengths.assign(size_t(n), len);
  s.trained.assign(size_t(n), len - 1);
  return s;
}

class PlanModels : public ::testing::TestWithParam<const char*> {};

TEST_P(PlanModels, ParameterCountsMatchTheLoadedModel) {
  const std::string dir = hs::test::write_plan_model("params", GetParam());
  const io::HfConfig c = io::load_hf_config(dir);
  model::Model m = model::Model::load(dir, {});
  const plan::ParamCounts n = plan::count_params(c);
  EXPECT_EQ(n.total(), numel_sum(m.named_parameters()));
  // Per term: the projections' weights, their biases, the embeddings and head, the norms.
  int64_t proj = 0, bias = 0, norms = 0, embed = 0;
  for (const auto& t : m.named_parameters()) {
    const std::string& name = t.name;
    if (model::names::is_embedding(name) || name == model::names::tensor(model::Slot::lm_head))
      embed += t.tensor.numel();
    else if (name.find("norm") != std::string::npos)
      norms += t.tensor.numel();
    else if (name.size() > 5 && name.substr(name.size() - 5) == ".bias")
      bias += t.tensor.numel();
    else
      proj += t.tensor.numel();
  }
  EXPECT_EQ(n.projections, proj);
  EXPECT_EQ(n.biases, bias);
  EXPECT_EQ(n.norms, norms);
  EXPECT_EQ(n.embed + n.lm_head, embed);
  for (model::Proj p : model::kAllProjs) EXPECT_EQ(plan::proj_shape(c, p), model::proj_shape(c, p));
  // The trainer's FLOPs basis: (full ? 6 : 4) x (vocab x hidden + the projections' in x out), asked of the
  // loaded model's projections.
  int64_t linear = c.vocab_size * c.hidden_size;
  for (int i = 0; i < m.num_layers(); ++i)
    for (const auto& p : m.layer(i).proj) linear += p->in_features() * p->out_features();
  EXPECT_DOUBLE_EQ(plan::trainer_flops_per_token(c, false), 4.0 * double(linear));
  EXPECT_DOUBLE_EQ(plan::trainer_flops_per_token(c, true), 6.0 * double(linear));
  // The plan's weights and full fine-tuning state: bf16 weights, bf16 .grad, fp32 master, flat fp32
  // gradient, two fp32 moments (fp64 sum: auto, few parameters, two micro-batches a step).
  plan::RunSpec s;
  s.finetune = plan::Finetune::full;
  s.tokens_per_batch = 64;
  s.grad_accum = 2;
  const plan::Plan p = plan::estimate(c, s, rows(4, 32), std::nullopt);
  EXPECT_EQ(p.params, numel_sum(m.named_parameters()));
  EXPECT_EQ(p.trainable, p.params);
  EXPECT_DOUBLE_EQ(find_term(p.memory.states, "weights (bf16)")->value, 2.0 * double(p.params));
  EXPECT_DOUBLE_EQ(find_term(p.memory.states, "AdamW moments")->value, 8.0 * double(p.params));
  EXPECT_DOUBLE_EQ(find_term(p.memory.states, "fp64 gradient sum")->value, 8.0 * double(p.params));
}

TEST_P(PlanModels, LoraParametersMatchTheTrainersAdapter) {
  const std::string dir = hs::test::write_plan_model("lora", GetParam());
  const io::HfConfig c = io::load_hf_config(dir);
  for (const std::vector<model::Proj>& targets :
       {std::vector<model::Proj>(model::kAllProjs.begin(), model::kAllProjs.end()),
        std::vector<model::Proj>{model::Proj::q, model::Proj::v},
        std::vector<model::Proj>{model::Proj::down}}) {
    for (int64_t r : {1, 8}) {
      model::Model m = model::Model::load(dir, {});
      lora::LoraConfig lc;
      lc.r = r;
      lc.targets = targets;
      lora::Adapter a = lora::Adapter::create(m, lc, 7, at::kFloat);
      const int64_t trained = numel_sum(a.trainable());
      EXPECT_EQ(plan::lora_params(c, r, targets), trained);
      // The state the trainer makes for them: FlatParams' fp32 gradient, AdamW's moments.
      std::vector<at::Tensor*> slots;
      std::vector<std::string> names;
      for (const auto& e : a.entries()) {
        slots.push_back(&e.module->a);
        slots.push_back(&e.module->b);
        names.push_back("a"), names.push_back("b");
      }
      train::FlatParams flat(slots, names, at::kCPU);
      train::AdamW opt(flat.master(), {});
      plan::RunSpec s;
      s.lora_r = r;
      s.lora_targets = targets;
      s.tokens_per_batch = 64;
      s.grad_sum = plan::GradSum::fp32;
      const plan::Plan p = plan::estimate(c, s, rows(4, 32), std::nullopt);
      EXPECT_EQ(p.trainable, trained);
      EXPECT_DOUBLE_EQ(find_term(p.memory.states, "LoRA A, B")->value, double(flat.master().nbytes()));
      EXPECT_DOUBLE_EQ(find_term(p.memory.states, "flat fp32 gradient")->value, double(flat.grad().nbytes()));
      EXPECT_DOUBLE_EQ(find_term(p.memory.states, "AdamW moments")->value,
                       double(opt.exp_avg().nbytes() + opt.exp_avg_sq().nbytes()));
      EXPECT_EQ(find_term(p.memory.states, "fp64 gradient sum"), nullptr);  // grad_sum = fp32
      // fp64: the trainer keeps the sum only when a step adds several micro-batches (ranks x grad_accum).
      s.grad_sum = plan::GradSum::fp64;
      EXPECT_EQ(find_term(plan::estimate(c, s, rows(4, 32), std::nullopt).memory.states, "fp64 gradient sum"),
                nullptr);  // -np 1, grad_accum 1: one term
      s.grad_accum = 2;
      const plan::Plan p2 = plan::estimate(c, s, rows(4, 32), std::nullopt);
      const plan::Term* sum = find_term(p2.memory.states, "fp64 gradient sum");
      ASSERT_NE(sum, nullptr);
      EXPECT_DOUBLE_EQ(sum->value, double(trained) * 8);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, PlanModels, ::testing::Values(kLlama, kQwen3, kQwen2),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           return std::string(i.index == 0   ? "llama_untied"
                                              : i.index == 1 ? "qwen3_qknorm_tied"
                                                             : "qwen2_qkv_bias");
                         });

TEST(Plan, Nf4BytesMatchQuantizedTensors) {
  // Sizes that are and are not multiples of the 64-element block and of 256 blocks.
  for (auto [out, in] :
       std::vector<std::pair<int64_t, int64_t>>{{64, 64}, {48, 40}, {3, 5}, {256, 80}, {130, 97}}) {
    at::manual_seed(1);
    const quant::Nf4Tensor q = quant::quantize_nf4(at::randn({out, in}, at::kFloat));
    EXPECT_EQ(plan::nf4_weight_bytes(out * in), q.bytes()) << out << " x " << in;
  }
  // A whole model quantized at load: the plan's NF4 term equals quant::nf4_bytes of it.
  const std::string dir = hs::test::write_plan_model("nf4", kLlama);
  const io::HfConfig c = io::load_hf_config(dir);
  model::Model m = model::Model::load(dir, quant::nf4_load_options({at::kFloat, at::kCPU}, c, true));
  plan::RunSpec s;
  s.finetune = plan::Finetune::qlora;
  s.tokens_per_batch = 64;
  const plan::Plan p = plan::estimate(c, s, rows(4, 32), std::nullopt);
  EXPECT_DOUBLE_EQ(find_term(p.memory.states, "weights: projections in NF4")->value,
                   double(quant::nf4_bytes(m)));
}

TEST(Plan, BatchPlanNumbersAreTheTrainers) {
  const io::HfConfig c = io::parse_hf_config(kLlama, "config.json");
  plan::Samples s;
  for (int i = 0; i < 50; ++i) {
    s.lengths.push_back(10 + (i * 37) % 90);
    s.trained.push_back(5);
  }
  for (data::Packing packing : {data::Packing::packed, data::Packing::padded}) {
    plan::RunSpec r;
    r.tokens_per_batch = 256;
    r.grad_accum = 2;
    r.world = 3;
    r.packing = packing;
    r.epochs = 2.5;
    const plan::Plan p = plan::estimate(c, r, s, plan::find_gpu("h100"));
    std::vector<int64_t> ids(50);
    std::iota(ids.begin(), ids.end(), 0);
    data::PlanOptions po;
    po.tokens_per_batch = 256;
    po.grad_accum = 2;
    po.world_size = 3;
    po.packing = packing;
    po.seed = r.seed;
    const data::BatchPlan bp = data::BatchPlan::build(s.lengths, s.trained, ids, po);
    EXPECT_EQ(p.steps_per_epoch, bp.steps_per_epoch());
    EXPECT_EQ(p.total_steps, int64_t(std::ceil(2.5 * double(bp.steps_per_epoch()))));
    int64_t largest = 0;
    for (const auto& mb : bp.micro_batches()) largest = std::max(largest, mb.padded_tokens());
    EXPECT_EQ(p.largest_micro_tokens, largest);
    // The speed's token count is the plan's: one epoch's real tokens per step.
    EXPECT_NEAR(p.tokens_per_step,
                double(std::accumulate(s.lengths.begin(), s.lengths.end(), int64_t(0))) /
                    double(bp.steps_per_epoch()),
                1e-9);
    EXPECT_GT(p.speed.allreduce_s, 0);
  }
  // A sample longer than tokens_per_batch: BatchPlan's error, naming the fix.
  plan::RunSpec r;
  r.tokens_per_batch = 50;
  EXPECT_THROW(plan::estimate(c, r, s, std::nullopt), Error);
}

// Published shapes (config.json of meta-llama/Llama-3.2-1B, Qwen/Qwen3-0.6B, meta-llama/Llama-3.1-8B,
// Qwen/Qwen3-8B), as bench/train_vs_peers.py writes them.
io::HfConfig published(const std::string& shape) {
  if (shape == "llama3.2-1b")
    return io::parse_hf_config(
        R"({"model_type":"llama","hidden_size":2048,"intermediate_size":8192,"num_hidden_layers":16,
    "num_attention_heads":32,"num_key_value_heads":8,"head_dim":64,"vocab_size":128256,
    "max_position_embeddings":131072,"rms_norm_eps":1e-5,"tie_word_embeddings":true,
    "rope_theta":500000.0,"rope_scaling":{"rope_type":"llama3","factor":32.0,"low_freq_factor":1.0,
    "high_freq_factor":4.0,"original_max_position_embeddings":8192}})",
        shape);
  if (shape == "qwen3-0.6b")
    return io::parse_hf_config(
        R"({"model_type":"qwen3","hidden_size":1024,"intermediate_size":3072,"num_hidden_layers":28,
    "num_attention_heads":16,"num_key_value_heads":8,"head_dim":128,"vocab_size":151936,
    "max_position_embeddings":40960,"rms_norm_eps":1e-6,"tie_word_embeddings":true,"rope_theta":1000000.0})",
        shape);
  if (shape == "llama3.1-8b")
    return io::parse_hf_config(
        R"({"model_type":"llama","hidden_size":4096,"intermediate_size":14336,"num_hidden_layers":32,
    "num_attention_heads":32,"num_key_value_heads":8,"head_dim":128,"vocab_size":128256,
    "max_position_embeddings":131072,"rms_norm_eps":1e-5,"tie_word_embeddings":false,
    "rope_theta":500000.0,"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,
    "high_freq_factor":4.0,"original_max_position_embeddings":8192}})",
        shape);
  if (shape == "qwen3-8b")
    return io::parse_hf_config(
        R"({"model_type":"qwen3","hidden_size":4096,"intermediate_size":12288,"num_hidden_layers":36,
    "num_attention_heads":32,"num_key_value_heads":8,"head_dim":128,"vocab_size":151936,
    "max_position_embeddings":40960,"rms_norm_eps":1e-6,"tie_word_embeddings":false,"rope_theta":1000000.0})",
        shape);
  throw Error("no config for " + shape);
}

// 8 x 2048-token rows, LoRA r=16 on all seven projections, checkpointing off, measured on one H100 by
// bench/train_vs_peers.py (bench/results/train_vs_peers_h100_rows.md: 17.7 GiB, 71,421 tokens/s; 18.6 GiB,
// 82,677 tokens/s). The memory is arithmetic only (no calibration): within the issue's 10%. The speed's
// efficiencies were fitted to these runs (plan/gpus.cpp): within 20% says the table still reproduces them.
TEST(Plan, MeasuredH100RunsOfThePublishedShapes) {
  struct Case {
    const char* shape;
    double gib, tokens_s;
  };
  for (const Case& k : {Case{"llama3.2-1b", 17.7, 71421}, Case{"qwen3-0.6b", 18.6, 82677}}) {
    const io::HfConfig c = published(k.shape);
    plan::RunSpec s;
    s.tokens_per_batch = 8 * 2048;
    s.max_steps = 14;
    const plan::Plan p = plan::estimate(c, s, rows(8 * 14, 2048), plan::find_gpu("NVIDIA H100 80GB HBM3"));
    ASSERT_TRUE(p.gpu && p.speed.known);
    EXPECT_EQ(p.gpu->name, "H100 SXM");
    EXPECT_NEAR(p.memory.peak / kGiB, k.gib, 0.10 * k.gib) << c.model_type;
    EXPECT_NEAR(p.speed.tokens_per_s, k.tokens_s, 0.20 * k.tokens_s) << c.model_type;
    EXPECT_TRUE(p.fits);
    // Checkpointing keeps one input per layer: less memory, more time; offload less still.
    s.grad_ckpt = plan::Ckpt::on;
    const plan::Plan on = plan::estimate(c, s, rows(8 * 14, 2048), p.gpu);
    s.grad_ckpt = plan::Ckpt::offload;
    const plan::Plan off = plan::estimate(c, s, rows(8 * 14, 2048), p.gpu);
    EXPECT_LT(on.memory.peak, 0.5 * p.memory.peak);
    EXPECT_LT(off.memory.peak, on.memory.peak);
    EXPECT_LT(on.speed.tokens_per_s, p.speed.tokens_per_s);
  }
}

// Every run of bench/results/plan_accuracy_h100.json (bench/plan_accuracy.py on one H100: Llama-3.2-1B,
// Qwen3-0.6B, Llama-3.1-8B x lora / qlora / full x grad_ckpt off / on x two batch sizes, 48 rows of 2048
// tokens, metrics.jsonl's peak and tokens/s): the plan within the issue's bounds, peak 10% (arithmetic only)
// and tokens/s 20% (QLoRA's and full fine-tuning's step costs in plan/gpus.cpp were fitted to these runs).
TEST(Plan, MeasuredAccuracyRunsOnH100) {
  // gtest_discover_tests passes only the first variable of HS_TEST_ENV: fall back to this file's checkout.
  const char* src = std::getenv("HSLOTH_SOURCE");
  const std::filesystem::path root =
      src ? std::filesystem::path(src) : std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
  const std::string path = (root / "bench" / "results" / "plan_accuracy_h100.json").string();
  ASSERT_TRUE(std::filesystem::exists(path)) << path << " not found (HSLOTH_SOURCE)";
  const nlohmann::json j = nlohmann::json::parse(io::read_file(path));
  int checked = 0;
  for (const auto& r : j.at("records")) {
    if (!r.contains("meas_peak_gib") || !r.contains("meas_tok_s")) continue;
    const std::string shape = r.at("shape"), ft = r.at("finetune"), ck = r.at("grad_ckpt");
    plan::RunSpec s;
    s.finetune = ft == "full"    ? plan::Finetune::full
                 : ft == "qlora" ? plan::Finetune::qlora
                                 : plan::Finetune::lora;
    s.grad_ckpt = ck == "on" ? plan::Ckpt::on : plan::Ckpt::off;
    s.tokens_per_batch = r.at("tokens_per_batch").get<int64_t>();
    s.seed = 0;
    s.max_steps = 6;
    s.adamw_step_chunk = 0;  // measured before AdamW stepped in chunks (whole-buffer temporaries)
    plan::Samples data = rows(48, 2048);
    data.trained.assign(48, 2047);
    const plan::Plan p = plan::estimate(published(shape), s, data, plan::find_gpu("h100"));
    const double peak = r.at("meas_peak_gib").get<double>(), tps = r.at("meas_tok_s").get<double>();
    const std::string what = shape + " " + ft + " ckpt " + ck + " " + std::to_string(s.tokens_per_batch);
    EXPECT_NEAR(p.memory.peak / kGiB, peak, 0.10 * peak) << what;
    EXPECT_NEAR(p.speed.tokens_per_s, tps, 0.20 * tps) << what;
    ++checked;
  }
  EXPECT_GE(checked, 16);
}

// Later measurements on main (bench/RESULTS.md, bench/results/train_8b_offload_h100.json, scaling_h200x2.md):
// Llama-3.1-8B with grad_ckpt on / offload, one long sample per step, full fine-tuning, H200 and 2 x H200
// with the all-reduce in one piece or in buckets. The memory is arithmetic (never fitted); the offload
// bandwidth, the long-sample attention gain, the H200 factors and the bucket costs were fitted to some of
// these runs.
TEST(Plan, LaterMeasuredRuns) {
  struct Case {
    const char* gpu;
    const char* shape;
    plan::Finetune ft;
    plan::Ckpt ck;
    int32_t sample;  // tokens per sample; tokens_per_batch = 8192 (4 rows) or one sample per step
    int64_t tokens_per_batch;
    int world;
    double bucket_mb, tokens_s, gib;  // gib 0: not measured
  };
  using F = plan::Finetune;
  using K = plan::Ckpt;
  const Case cases[] = {
      {"h100", "llama3.1-8b", F::lora, K::on, 2048, 8192, 1, 25, 10712, 19.4},
      {"h100", "llama3.1-8b", F::lora, K::offload, 2048, 8192, 1, 25, 10384, 17.5},
      {"h100", "llama3.1-8b", F::qlora, K::on, 2048, 8192, 1, 25, 10225, 9.85},
      {"h100", "llama3.1-8b", F::qlora, K::offload, 2048, 8192, 1, 25, 9898, 7.96},
      {"h100", "llama3.1-8b", F::lora, K::offload, 2048, 2048, 1, 25, 10320, 16.4},
      {"h100", "llama3.1-8b", F::lora, K::offload, 8192, 8192, 1, 25, 9526, 17.5},
      {"h100", "llama3.1-8b", F::lora, K::offload, 32768, 32768, 1, 25, 6450, 22.1},
      {"h100", "llama3.2-1b", F::full, K::off, 2048, 8192, 1, 25, 41553, 34.9},
      {"h200", "llama3.1-8b", F::lora, K::on, 2048, 8192, 1, 25, 10743, 19.3},
      {"h200", "llama3.1-8b", F::qlora, K::on, 2048, 8192, 1, 25, 10381, 9.8},
      {"h200", "llama3.2-1b", F::full, K::off, 2048, 8192, 1, 25, 46242, 34.9},
      {"h200", "llama3.1-8b", F::lora, K::on, 2048, 8192, 2, 25, 20950, 0},
      {"h200", "llama3.1-8b", F::qlora, K::on, 2048, 8192, 2, 25, 20198, 0},
      {"h200", "llama3.2-1b", F::full, K::off, 2048, 8192, 2, 0, 85593, 0},
      {"h200", "llama3.2-1b", F::full, K::off, 2048, 8192, 2, 25, 86836, 0},
  };
  for (const Case& k : cases) {
    plan::RunSpec s;
    s.finetune = k.ft;
    s.grad_ckpt = k.ck;
    s.tokens_per_batch = k.tokens_per_batch;
    s.world = k.world;
    s.bucket_mb = k.bucket_mb;
    s.max_steps = 14;
    s.adamw_step_chunk = 0;  // measured before AdamW stepped in chunks (whole-buffer temporaries)
    plan::Samples data = rows(56, k.sample);
    const plan::Plan p = plan::estimate(published(k.shape), s, data, plan::find_gpu(k.gpu));
    const std::string what = std::string(k.gpu) + " " + k.shape + " " + plan::finetune_name(k.ft) + " ckpt " +
                             plan::ckpt_name(k.ck) + " " + std::to_string(k.tokens_per_batch) + " -np " +
                             std::to_string(k.world);
    if (k.gib > 0) {
      EXPECT_NEAR(p.memory.peak / kGiB, k.gib, 0.10 * k.gib) << what;
    }
    EXPECT_NEAR(p.speed.tokens_per_s, k.tokens_s, 0.20 * k.tokens_s) << what;
  }
}

// Session 7's runs beside Unsloth on the current fast path (bench/results/train_vs_peers_s7_*.json, one H100 or
// H200, 3 warm-up + 11 timed steps; the long-context rows 1 + 2). None of them was used to fit plan/gpus.cpp
// except the 1B no-checkpointing row's A/B, which set lora_bytes: the plan within 5% of every measured peak and
// 10% of every measured tokens/s.
TEST(Plan, Session7RunsBesideUnsloth) {
  struct Case {
    const char* gpu;
    const char* shape;
    plan::Finetune ft;
    plan::Ckpt ck;
    int32_t sample;
    int64_t tokens_per_batch;
    double tokens_s, gib;
  };
  using F = plan::Finetune;
  using K = plan::Ckpt;
  const Case cases[] = {
      {"h100", "llama3.2-1b", F::lora, K::off, 2048, 16384, 80160, 17.6},
      {"h100", "qwen3-0.6b", F::lora, K::off, 2048, 16384, 98870, 18.5},
      {"h100", "llama3.2-1b", F::lora, K::on, 2048, 16384, 59111, 5.0},
      {"h100", "llama3.2-1b", F::lora, K::offload, 2048, 16384, 58747, 4.2},
      {"h100", "qwen3-0.6b", F::lora, K::on, 2048, 16384, 73838, 3.0},
      {"h100", "qwen3-0.6b", F::lora, K::offload, 2048, 16384, 73461, 2.3},
      {"h100", "llama3.1-8b", F::lora, K::off, 2048, 8192, 16223, 43.2},
      {"h100", "llama3.1-8b", F::lora, K::offload, 2048, 8192, 11359, 17.2},
      {"h100", "llama3.1-8b", F::lora, K::on, 2048, 8192, 11334, 19.0},
      {"h100", "qwen3-8b", F::lora, K::off, 2048, 8192, 15651, 47.6},
      {"h100", "qwen3-8b", F::lora, K::offload, 2048, 8192, 10897, 17.5},
      {"h100", "llama3.1-8b", F::qlora, K::offload, 2048, 8192, 11040, 7.5},
      {"h100", "qwen3-8b", F::qlora, K::offload, 2048, 8192, 10660, 7.9},
      {"h100", "llama3.1-8b", F::lora, K::offload, 2048, 2048, 10835, 16.0},
      {"h100", "llama3.1-8b", F::lora, K::offload, 8192, 8192, 9964, 17.2},
      {"h100", "llama3.1-8b", F::lora, K::offload, 32768, 32768, 6677, 21.8},
      {"h100", "llama3.2-1b", F::full, K::off, 2048, 8192, 43575, 34.9},
      {"h200", "llama3.1-8b", F::lora, K::off, 2048, 8192, 16764, 43.2},
      {"h200", "qwen3-8b", F::lora, K::off, 2048, 8192, 16074, 47.6},
  };
  for (const Case& k : cases) {
    plan::RunSpec s;
    s.finetune = k.ft;
    s.grad_ckpt = k.ck;
    s.tokens_per_batch = k.tokens_per_batch;
    s.max_steps = 14;
    const plan::Plan p =
        plan::estimate(published(k.shape), s, rows(int(14 * k.tokens_per_batch / k.sample), k.sample),
                       plan::find_gpu(k.gpu));
    const std::string what = std::string(k.gpu) + " " + k.shape + " " + plan::finetune_name(k.ft) + " ckpt " +
                             plan::ckpt_name(k.ck) + " " + std::to_string(k.tokens_per_batch) + "/" +
                             std::to_string(k.sample);
    std::printf("%-60s peak %6.2f vs %6.2f GiB (%+5.1f%%), %7.0f vs %7.0f tok/s (%+5.1f%%)\n", what.c_str(),
                p.memory.peak / kGiB, k.gib, 100 * (p.memory.peak / kGiB / k.gib - 1), p.speed.tokens_per_s,
                k.tokens_s, 100 * (p.speed.tokens_per_s / k.tokens_s - 1));
    EXPECT_NEAR(p.memory.peak / kGiB, k.gib, 0.05 * k.gib) << what;
    EXPECT_NEAR(p.speed.tokens_per_s, k.tokens_s, 0.10 * k.tokens_s) << what;
  }
}

TEST(Plan, AdviceFitsAndComesFastestFirst) {
  const io::HfConfig c = io::parse_hf_config(
      R"({"model_type":"llama","hidden_size":2048,"intermediate_size":8192,"num_hidden_layers":16,
      "num_attention_heads":32,"num_key_value_heads":8,"vocab_size":128256,"max_position_embeddings":8192,
      "tie_word_embeddings":true})",
      "config.json");
  plan::RunSpec s;
  s.tokens_per_batch = 16 * 2048;
  const plan::Samples data = rows(64, 2048);
  auto gpu = plan::find_gpu("rtx4090");
  ASSERT_TRUE(gpu);
  const plan::Plan p = plan::estimate(c, s, data, gpu);
  ASSERT_FALSE(p.fits);  // ~35 GiB on a 24 GB card: no
  const auto advice = plan::advise(c, p, data);
  ASSERT_FALSE(advice.empty());
  ASSERT_TRUE(advice.front().plan.fits);
  for (size_t i = 1; i < advice.size(); ++i)
    if (advice[i].plan.fits) {
      EXPECT_GE(advice[i - 1].plan.speed.tokens_per_s / advice[i - 1].plan.spec.world,
                advice[i].plan.speed.tokens_per_s / advice[i].plan.spec.world);
    }
  // A memory-only GPU: a memory plan and no speed; an unknown name: nothing.
  auto mem = plan::find_gpu("24GiB");
  ASSERT_TRUE(mem && mem->memory_only);
  EXPECT_DOUBLE_EQ(mem->memory_bytes, 24 * kGiB);
  const plan::Plan pm = plan::estimate(c, s, data, mem);
  EXPECT_TRUE(pm.fits_known);
  EXPECT_FALSE(pm.speed.known);
  EXPECT_FALSE(plan::find_gpu("h1000").has_value());
  EXPECT_EQ(plan::find_gpu("NVIDIA A100-SXM4-40GB")->name, "A100 40GB");
  EXPECT_EQ(plan::find_gpu("NVIDIA H100 PCIe")->name, "H100 PCIe");
  EXPECT_EQ(plan::find_gpu("NVIDIA H200")->name, "H200");
  EXPECT_EQ(plan::find_gpu("NVIDIA H100 80GB HBM3")->name, "H100 SXM");
  EXPECT_EQ(plan::find_gpu("NVIDIA GeForce RTX 4090")->name, "RTX 4090");
  EXPECT_EQ(plan::find_gpu("NVIDIA A100 80GB PCIe")->name, "A100 80GB");
  EXPECT_EQ(plan::find_gpu("a100-40gb")->name, "A100 40GB");
  EXPECT_FALSE(plan::find_gpu("NVIDIA H1000").has_value());
  // Every word the messages list is read back as its GPU.
  for (const auto& g : plan::known_gpus()) {
    std::string w;
    for (char ch : g.name) w += ch == ' ' ? '-' : char(std::tolower(static_cast<unsigned char>(ch)));
    ASSERT_TRUE(plan::find_gpu(w).has_value()) << w;
    EXPECT_EQ(plan::find_gpu(w)->name, g.name);
    EXPECT_NE(plan::known_gpu_words().find(w), std::string::npos);
  }
}

}  // namespace
