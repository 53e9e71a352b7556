// Shared pieces of `hsloth plan` and train's start-up check (see plan_run.h).
#include "cli/plan_run.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "core/error.h"
#include "core/log.h"
#include "data/shard_index.h"
#if HS_CUDA_COMPILED
#include "kernels/device_info.h"
#endif

namespace hs::cli {
namespace {
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string gib(double b) {
  char s[32];
  std::snprintf(s, sizeof s, "%.2f GiB", b / kGiB);
  return s;
}
}  // namespace

plan::RunSpec plan_spec(const train::TrainOptions& o, const io::HfConfig& model, int world) {
  plan::RunSpec s;
  // A pre-quantized NF4 folder trains as QLoRA whatever finetune says (the trainer's rule).
  s.finetune = o.finetune == train::Finetune::full                              ? plan::Finetune::full
               : o.finetune == train::Finetune::qlora || model.quantization.nf4 ? plan::Finetune::qlora
                                                                                : plan::Finetune::lora;
  s.lora_r = o.lora.r;
  s.lora_targets = o.lora.targets;
  s.grad_ckpt = o.model.grad_ckpt == train::GradCkpt::on        ? plan::Ckpt::on
                : o.model.grad_ckpt == train::GradCkpt::offload ? plan::Ckpt::offload
                                                                : plan::Ckpt::off;
  s.tokens_per_batch = o.plan.tokens_per_batch;
  s.grad_accum = o.plan.grad_accum;
  s.packing = o.plan.packing;
  s.grad_sum = o.optimizer.grad_sum == train::GradSum::fp64   ? plan::GradSum::fp64
               : o.optimizer.grad_sum == train::GradSum::fp32 ? plan::GradSum::fp32
                                                              : plan::GradSum::auto_;
  s.world = world;
  s.shard_optimizer = o.dist.shard_optimizer;
  s.bucket_mb = o.dist.bucket_mb;
  if (s.shard_optimizer && s.finetune != plan::Finetune::full)  // the trainer's refusal, before any plan
    throw Error("dist.shard_optimizer = on shards the optimizer state of full fine-tuning")
        .hint("LoRA and QLoRA state is small: set dist.shard_optimizer = off (or finetune = full)");
  s.seed = o.seed;
  s.max_steps = o.schedule.max_steps;
  s.epochs = o.schedule.epochs;
  return s;
}

plan::Samples plan_samples(const train::TrainOptions& o) {
  data::ShardIndex::Options so;
  so.verify_data = false;  // lengths only; train verifies when it opens them
  const data::ShardIndex idx = data::ShardIndex::open(o.data.train, so);
  plan::Samples s;
  s.lengths = idx.lengths();
  s.trained = idx.trained();
  s.path = o.data.train;
  if (o.data.eval.empty() && o.data.eval_fraction > 0) {
    // Trainer::setup_data's seeded hold-out.
    std::vector<int64_t> perm(s.lengths.size());
    for (size_t i = 0; i < perm.size(); ++i) perm[i] = int64_t(i);
    data::portable_shuffle(perm, o.seed ^ 0x5eedull);
    const size_t n_eval = size_t(std::llround(o.data.eval_fraction * double(perm.size())));
    s.ids.assign(perm.begin() + std::ptrdiff_t(n_eval), perm.end());
    std::sort(s.ids.begin(), s.ids.end());
  }
  return s;
}

GpuChoice choose_gpu(const std::string& word, int device_index) {
  GpuChoice c;
  if (word != "auto") {
    c.gpu = plan::find_gpu(word);
    if (!c.gpu)
      throw Error("unknown GPU '" + word + "'")
          .at("--gpu")
          .hint("name one of " + plan::known_gpu_words() +
                ", or give its memory size (--gpu 80GiB) for a memory plan without speed");
    return c;
  }
#if HS_CUDA_COMPILED
  const auto devices = kernels::visible_devices();
  for (const auto& d : devices)
    if (d.index == device_index) {
      c.free_bytes = double(d.free_memory);
      if (auto g = plan::find_gpu(d.name)) {
        c.gpu = *g;
        c.gpu->memory_bytes = double(d.total_memory);  // what this card reports
        c.note = "GPU " + std::to_string(d.index) + ": " + d.name;
      } else {
        plan::GpuSpec spec;
        spec.name = d.name;
        spec.memory_bytes = double(d.total_memory);
        spec.memory_only = true;
        spec.source = "this machine's GPU " + std::to_string(d.index);
        c.gpu = spec;
        c.note = "unknown GPU '" + d.name +
                 "': memory plan only; for speed pass --gpu NAME of one like it (" + plan::known_gpu_words() +
                 ")";
      }
      return c;
    }
#endif
  (void)device_index;
  c.note = "no GPU visible here: memory plan only; pass --gpu NAME (" + plan::known_gpu_words() +
           ") or --gpu 80GiB";
  return c;
}

void check_run_fits(const train::TrainOptions& o, bool on_gpu, int device_index, int world) {
  const char* env = std::getenv("HSLOTH_PLAN_GPU_MEM");
  double free_bytes = -1;
  std::optional<plan::GpuSpec> gpu;
  if (env && *env) {
    const std::string v = env;
    auto g = plan::find_gpu(v);
    char* end = nullptr;
    const double bytes = std::strtod(v.c_str(), &end);
    if (g && g->memory_only)
      free_bytes = g->memory_bytes;
    else if (end && *end == '\0' && bytes > 0)
      free_bytes = bytes;
    else
      throw Error("HSLOTH_PLAN_GPU_MEM = '" + v + "' is not a size").hint("give bytes or e.g. 24GiB");
    plan::GpuSpec m;
    m.name = "HSLOTH_PLAN_GPU_MEM";
    m.memory_bytes = free_bytes;
    m.memory_only = true;
    gpu = m;
  } else {
    if (!on_gpu) return;  // CPU runs: host memory is not planned
    GpuChoice c = choose_gpu("auto", device_index);
    if (c.free_bytes < 0) return;
    free_bytes = c.free_bytes;
    gpu = c.gpu;
  }
  const io::HfConfig model = io::load_hf_config(o.model.path);
  const plan::Samples samples = plan_samples(o);
  const plan::RunSpec spec = plan_spec(o, model, world);
  plan::Plan p = plan::estimate(model, spec, samples, gpu);
  // Conservative: refuse only past the free memory with 5% to spare, on the peak allocated alone (no
  // context or slack): a wrong refusal of a run that would fit is worse than a late out-of-memory.
  const double limit = free_bytes * 1.05;
  if (p.memory.peak <= limit) {
    log::info("plan: predicted peak ", gib(p.memory.peak), " of ", gib(free_bytes), " free (",
              p.memory.peak_phase, ")");
    return;
  }
  // Advice against the free memory, as `hsloth plan` would give it for this GPU.
  if (p.gpu) {
    p.gpu->memory_bytes = free_bytes;
    p.fits_known = true;
    p.fits = false;
  }
  std::string advice;
  for (const auto& k : plan::advise(model, p, samples))
    if (k.plan.fits)
      advice +=
          "\n    " + k.change + "  (peak " + gib(k.plan.memory.peak) +
          (k.plan.speed.known ? hs::str(", ~", int64_t(std::llround(k.plan.speed.tokens_per_s)), " tokens/s")
                              : std::string()) +
          ")";
  throw Error(hs::str("the run does not fit: predicted peak ", gib(p.memory.peak), " (", p.memory.peak_phase,
                      ") is more than the ", gib(free_bytes), " free on this GPU",
                      env && *env ? " (HSLOTH_PLAN_GPU_MEM)" : ""))
      .at("train.plan_check")
      .hint((advice.empty() ? std::string("lower train.tokens_per_batch or set train.grad_ckpt = on")
                            : "changes that fit:" + advice) +
            "\n  `hsloth plan` with the same flags shows the whole estimate; --train.plan_check off runs "
            "anyway");
}

}  // namespace hs::cli
