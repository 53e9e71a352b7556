// `hsloth plan`: the memory and speed of a training run before it starts (plan/plan.h). It reads exactly what
// `hsloth train` reads -- the same schema and overrides, from_config()'s checks -- plus --gpu, --world and
// --json; from the model folder only config.json, from the shards only the sample lengths. No GPU is needed:
// --gpu names one from the table (or a memory size); "auto" takes this machine's.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/plan_run.h"
#include "config/schemas.h"
#include "core/log.h"
#include "io/hf_config.h"
#include "plan/plan.h"
#include "train/options.h"

namespace {

hs::config::Schema schema() {
  const hs::config::Schema& train = hs::config::train_schema();
  hs::config::Schema s(
      "plan", "--config run.ini [--section.key value ...] [--gpu NAME|SIZE|auto] [--world N] [--json]",
      "Predict a training run's peak GPU memory, tokens/s, MFU and duration before it starts, from the same\n"
      "config as `hsloth train` (and the same --section.key overrides), the model's config.json (no weights\n"
      "are read) and the shard index (sample lengths only). Prints the memory per rank as named terms\n"
      "(weights, LoRA, fp32 masters, AdamW moments, gradients, activations per decoder layer for the\n"
      "checkpointing mode, the loss chunk, backward and optimizer transients, CUDA context and allocator\n"
      "slack), the time of a micro-batch by kind of work, and when the run does not fit the changes that "
      "make\n"
      "it fit, fastest first (train.tokens_per_batch, train.grad_ckpt, finetune = qlora, more ranks).\n"
      "`hsloth train` runs the same estimate before loading weights and stops when the predicted peak\n"
      "exceeds the GPU's free memory (--train.plan_check off overrides).\n\n"
      "  hsloth plan --config configs/lora-qwen3-0.6b.ini --gpu h100\n"
      "  hsloth plan --config run.ini --train.tokens_per_batch 32768 --gpu a100-40gb --world 4 --json");
  for (const auto& k : train.keys()) s.add(k);
  s.str("gpu", "auto",
        "GPU to plan for: auto (this machine's), a name (" + hs::plan::known_gpu_words() +
            "), or a memory size such as 80GiB (memory plan only)");
  s.integer("world", 1, "ranks (GPUs) the run will use: the batch plan, all-reduce time and global tokens/s",
            1, 65536);
  s.flag("json", "print one JSON object (every term, the verdict and the advice) instead of the tables");
  return s;
}

int run(const hs::config::Config& cfg) {
  const hs::train::TrainOptions options = hs::train::from_config(cfg);
  const int world = int(cfg.get_int("world"));
  if (options.model.dtype == "fp32" || options.model.dtype == "float32")
    hs::log::warn(
        "the plan is for bf16 GPU runs (model.dtype = auto or bf16); model.dtype = ", options.model.dtype,
        " keeps fp32 activations (about twice these) and runs without the fast path");
  const hs::io::HfConfig model = hs::io::load_hf_config(options.model.path);
  hs::cli::GpuChoice gpu = hs::cli::choose_gpu(cfg.get("gpu"), 0);
  const hs::plan::Samples samples = hs::cli::plan_samples(options);
  const hs::plan::RunSpec spec = hs::cli::plan_spec(options, model, world);
  const hs::plan::Plan p = hs::plan::estimate(model, spec, samples, gpu.gpu);
  const auto advice = hs::plan::advise(model, p, samples);
  if (cfg.get_bool("json")) {
    nlohmann::ordered_json j = hs::plan::to_json(p, advice);
    j["model_path"] = options.model.path;
    j["data_train"] = options.data.train;
    if (!gpu.note.empty()) j["gpu_note"] = gpu.note;
    std::printf("%s\n", j.dump(1).c_str());
    return 0;
  }
  if (!gpu.note.empty()) std::printf("note:  %s\n", gpu.note.c_str());
  std::printf("%s", hs::plan::render_text(p, advice).c_str());
  return 0;
}

hs::cli::Registrar reg{
    {"plan", "memory and speed estimate for a training config before a run", schema, run, false}};

}  // namespace
