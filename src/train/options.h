// Typed options of `hsloth train`: one struct per concern (model, data, LoRA, batching plan, optimizer,
// schedule, checkpoints, eval, logging, dist), built once from the resolved config by from_config() and
// validated there, so a misspelt key or a bad combination fails at start-up and nowhere else looks a key up
// by its string. Tests build TrainOptions in code (no config file) and hand it to the Trainer.
#pragma once

#include <cstdint>
#include <string>

#include "data/batch_plan.h"
#include "lora/lora.h"
#include "train/adamw.h"
#include "train/grad_ckpt.h"
#include "train/lr_schedule.h"

namespace hs::config {
class Config;
}

namespace hs::train {

// qlora: LoRA on the base's projections quantized to NF4 at load (or read pre-quantized), see hs::quant.
enum class Finetune { lora, qlora, full };
enum class GradSum { auto_, fp64, fp32 };

struct ModelOptions {
  std::string path;            // HF folder (config.json + safetensors + tokenizer.json)
  std::string dtype = "auto";  // a model::resolve_dtype word
  GradCkpt grad_ckpt = GradCkpt::off;
};

struct DataOptions {
  std::string train;  // shard folder
  std::string eval;   // "" : hold out eval_fraction of train
  double eval_fraction = 0;
};

// How the shards become micro-batches and steps (data::PlanOptions; seed and world come from the run).
struct PlanOptions {
  int64_t tokens_per_batch = 8192;
  int grad_accum = 1;
  data::Packing packing = data::Packing::packed;
};

struct OptimizerOptions {
  AdamWConfig adamw;
  double max_grad_norm = 1.0;  // 0: no clipping
  GradSum grad_sum = GradSum::auto_;
};

struct ScheduleOptions {
  Schedule kind = Schedule::cosine;
  double lr = 2e-4;
  int64_t warmup_steps = 10;
  int64_t max_steps = 0;  // 0: run `epochs` epochs
  double epochs = 1;
  // Where warmup_steps came from ("" : the default) and how epochs was written, for check_warmup's errors.
  std::string warmup_origin;
  std::string epochs_text = "1";
};

struct CheckpointOptions {
  int64_t every = 0;  // 0: only at the end and on a stop signal
  int keep = 3;
  std::string resume = "off";  // off | auto | a checkpoint folder
};

struct EvalOptions {
  int64_t every = 0;
  bool exact_match = false;
  int64_t max_samples = 0;
};

struct LogOptions {
  int64_t every = 1;
};

struct DistOptions {
  int64_t check_every = 100;  // parameter-equality check cadence of multi-rank runs (0: never)
  double bucket_mb = 25;       // gradient all-reduce bucket size in MB (0: one all-reduce after backward)
  bool shard_optimizer = false;  // ZeRO-1 for full fine-tuning
};

struct TrainOptions {
  Finetune finetune = Finetune::lora;
  std::string run_dir = "runs/run";
  uint64_t seed = 42;
  ModelOptions model;
  DataOptions data;
  lora::LoraConfig lora;  // used when finetune == lora or qlora; base_model_name_or_path = model.path
  PlanOptions plan;
  OptimizerOptions optimizer;
  ScheduleOptions schedule;
  CheckpointOptions checkpoint;
  EvalOptions eval;
  LogOptions log;
  DistOptions dist;
  // The resolved config as INI (config.resolved.ini, and each checkpoint's record of it); "" when the options
  // were built in code, and then config.resolved.ini is not written.
  std::string resolved_ini;
};

// The one place that reads the `hsloth train` keys (config::train_schema()) and checks their combinations.
TrainOptions from_config(const config::Config& cfg);

// warmup_steps must not exceed the run's steps: an error when warmup_steps was given (warmup_origin set), a
// warning for the default. from_config() checks a given warmup against max_steps; the trainer checks every
// run once the plan knows its steps.
void check_warmup(const ScheduleOptions& s, int64_t total_steps);

// "packed" | "padded", as the config spells them.
const char* packing_name(data::Packing p);

}  // namespace hs::train
