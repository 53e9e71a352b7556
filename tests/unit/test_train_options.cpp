// TrainOptions: from_config() reads the schema's keys into the typed options (defaults agree with the
// schema's; value checks keep their messages), and a Trainer built from options written in code trains
// a tiny random llama on CPU to the same adapter, bit for bit, as the same run through the config path.
#include <ATen/ATen.h>
#include <ftw.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/schemas.h"
#include "core/error.h"
#include "data/shard_writer.h"
#include "dist/communicator.h"
#include "io/file.h"
#include "model/registry.h"
#include "support/test_support.h"
#include "tiny_llama.h"
#include "train/options.h"
#include "train/trainer.h"

namespace {
namespace fs = std::filesystem;
using namespace hs::model;
using hs::train::TrainOptions;

std::string join(const std::string& a, const std::string& b) { return (fs::path(a) / b).string(); }

// A tiny llama (2 layers, hidden 16, vocab 40, random weights) and a shard set of random samples.
class TinyRun : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = hs::test::temp_dir("hs-train-options");
    model_ = join(dir_, "model");
    shards_ = join(dir_, "shards");
    hs::test::write_tiny_llama(model_, 7);

    hs::data::SampleSet set;
    std::mt19937 rng(11);
    for (int s = 0; s < 24; ++s) {
      const int len = 6 + int(rng() % 10);
      std::vector<int32_t> ids(static_cast<size_t>(len));
      std::vector<uint8_t> mask(static_cast<size_t>(len), 0);
      for (int t = 0; t < len; ++t) {
        ids[size_t(t)] = int32_t(rng() % 40);
        mask[size_t(t)] = t >= len / 2 ? 1 : 0;  // a "response" half
      }
      set.add(ids, mask, s);
    }
    hs::data::ShardMeta meta;
    meta.tokenizer_name = "none";
    meta.vocab_size = 40;
    meta.template_name = "none";
    meta.loss_policy = "response";
    meta.formats = "text";
    meta.created_by = "hsloth test";
    hs::data::write_shard_set(shards_, set, meta, hs::data::WriteOptions{});
  }
  void TearDown() override {
    if (HasFailure()) return;  // left for inspection
    nftw(
        dir_.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 8,
        FTW_DEPTH | FTW_PHYS);
  }

  // The run of this test, written in code: LoRA r=4 on q/v, 3 steps of 2 micro-batches, warmup 1, linear.
  TrainOptions in_code(const std::string& run) const {
    TrainOptions o;
    o.run_dir = join(dir_, run);
    o.seed = 5;
    o.model.path = model_;
    o.model.dtype = "float32";
    o.data.train = shards_;
    o.lora.r = 4;
    o.lora.alpha = 8;
    o.lora.targets = {Proj::q, Proj::v};
    o.lora.base_model_name_or_path = model_;
    o.plan.tokens_per_batch = 32;
    o.plan.grad_accum = 2;
    o.optimizer.adamw.weight_decay = 0.01;
    o.schedule.kind = hs::train::Schedule::linear;
    o.schedule.lr = 1e-2;
    o.schedule.warmup_steps = 1;
    o.schedule.max_steps = 3;
    o.dist.check_every = 0;
    return o;
  }
  // The same run as an INI file through config::parse and from_config().
  std::string ini(const std::string& run) const {
    return "[model]\npath = " + model_ + "\ndtype = float32\n[data]\ntrain = " + shards_ +
           "\n[run]\ndir = " + join(dir_, run) +
           "\n[lora]\nr = 4\nalpha = 8\ntargets = q_proj v_proj\n"
           "[train]\nseed = 5\ntokens_per_batch = 32\ngrad_accum = 2\nweight_decay = 0.01\nschedule = "
           "linear\n"
           "lr = 1e-2\nwarmup_steps = 1\nmax_steps = 3\n[dist]\ncheck_every = 0\n";
  }
  static std::string adapter_bytes(const TrainOptions& o) {
    auto comm = hs::dist::make_communicator(at::Device(at::kCPU));
    hs::train::Trainer trainer(o, *comm);
    EXPECT_EQ(trainer.run(), 0);
    return hs::io::read_file(join(join(o.run_dir, "final"), "adapter_model.safetensors"));
  }

  std::string dir_, model_, shards_;
};

TEST_F(TinyRun, OptionsBuiltInCodeTrainLikeTheConfigPath) {
  const std::string from_code = adapter_bytes(in_code("code"));
  const auto cfg =
      hs::config::parse_ini_text(hs::config::train_schema(), ini("config"), join(dir_, "run.ini"));
  const TrainOptions parsed = hs::train::from_config(cfg);
  EXPECT_EQ(parsed.lora.r, 4);
  EXPECT_EQ(parsed.plan.tokens_per_batch, 32);
  const std::string from_config = adapter_bytes(parsed);
  ASSERT_GT(from_code.size(), 1000u);
  EXPECT_TRUE(from_code == from_config) << "the adapters differ";
  // The config path wrote its resolved config; the in-code run had none to write.
  EXPECT_TRUE(hs::io::exists(join(join(dir_, "config"), "config.resolved.ini")));
  EXPECT_FALSE(hs::io::exists(join(join(dir_, "code"), "config.resolved.ini")));
  // Not vacuous: another learning rate trains another adapter.
  TrainOptions other = in_code("other");
  other.schedule.lr = 2e-2;
  EXPECT_FALSE(adapter_bytes(other) == from_code);
}

TEST_F(TinyRun, DefaultsOfTheStructsAreTheSchemaDefaults) {
  const std::string text = "[model]\npath = " + model_ + "\n[data]\ntrain = " + shards_ + "\n";
  const TrainOptions p = hs::train::from_config(
      hs::config::parse_ini_text(hs::config::train_schema(), text, join(dir_, "a.ini")));
  const TrainOptions d;
  EXPECT_EQ(p.finetune, d.finetune);
  EXPECT_EQ(p.seed, d.seed);
  EXPECT_EQ(p.model.dtype, d.model.dtype);
  EXPECT_EQ(p.model.grad_ckpt, d.model.grad_ckpt);
  EXPECT_EQ(p.data.eval, d.data.eval);
  EXPECT_EQ(p.data.eval_fraction, d.data.eval_fraction);
  EXPECT_EQ(p.lora.r, d.lora.r);
  EXPECT_EQ(p.lora.alpha, d.lora.alpha);
  EXPECT_EQ(p.lora.dropout, d.lora.dropout);
  EXPECT_EQ(p.lora.use_rslora, d.lora.use_rslora);
  EXPECT_EQ(p.lora.targets, d.lora.targets);
  EXPECT_EQ(p.plan.tokens_per_batch, d.plan.tokens_per_batch);
  EXPECT_EQ(p.plan.grad_accum, d.plan.grad_accum);
  EXPECT_EQ(p.plan.packing, d.plan.packing);
  EXPECT_EQ(p.optimizer.adamw.beta1, d.optimizer.adamw.beta1);
  EXPECT_EQ(p.optimizer.adamw.beta2, d.optimizer.adamw.beta2);
  EXPECT_EQ(p.optimizer.adamw.eps, d.optimizer.adamw.eps);
  EXPECT_EQ(p.optimizer.adamw.weight_decay, d.optimizer.adamw.weight_decay);
  EXPECT_EQ(p.optimizer.max_grad_norm, d.optimizer.max_grad_norm);
  EXPECT_EQ(p.optimizer.grad_sum, d.optimizer.grad_sum);
  EXPECT_EQ(p.schedule.kind, d.schedule.kind);
  EXPECT_EQ(p.schedule.lr, d.schedule.lr);
  EXPECT_EQ(p.schedule.warmup_steps, d.schedule.warmup_steps);
  EXPECT_EQ(p.schedule.max_steps, d.schedule.max_steps);
  EXPECT_EQ(p.schedule.epochs, d.schedule.epochs);
  EXPECT_EQ(p.schedule.epochs_text, d.schedule.epochs_text);
  EXPECT_EQ(p.schedule.warmup_origin, "");  // not given
  EXPECT_EQ(p.checkpoint.every, d.checkpoint.every);
  EXPECT_EQ(p.checkpoint.keep, d.checkpoint.keep);
  EXPECT_EQ(p.checkpoint.resume, d.checkpoint.resume);
  EXPECT_EQ(p.eval.every, d.eval.every);
  EXPECT_EQ(p.eval.exact_match, d.eval.exact_match);
  EXPECT_EQ(p.eval.max_samples, d.eval.max_samples);
  EXPECT_EQ(p.log.every, d.log.every);
  EXPECT_EQ(p.dist.check_every, d.dist.check_every);
  EXPECT_FALSE(p.resolved_ini.empty());
}

TEST_F(TinyRun, ValueChecksAreMadeWhenTheOptionsAreBuilt) {
  const std::string base = "[model]\npath = " + model_ + "\n[data]\ntrain = " + shards_ + "\n";
  const std::string file = join(dir_, "bad.ini");
  try {
    hs::train::from_config(hs::config::parse_ini_text(
        hs::config::train_schema(), base + "[train]\nmax_steps = 5\nwarmup_steps = 20\n", file));
    FAIL() << "warmup_steps > max_steps was accepted";
  } catch (const hs::Error& e) {
    EXPECT_NE(e.message().find("train.warmup_steps = 20 is more than the run's train.max_steps = 5"),
              std::string::npos)
        << e.message();
    EXPECT_NE(e.where().find("bad.ini:"), std::string::npos) << e.where();
  }
  // finetune = qlora (issue 13): LoRA on the NF4 base, the LoRA options as for lora.
  const auto q = hs::train::from_config(
      hs::config::parse_ini_text(hs::config::train_schema(), "finetune = qlora\n" + base, file));
  EXPECT_EQ(q.finetune, hs::train::Finetune::qlora);
}

}  // namespace
