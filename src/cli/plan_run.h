// What `hsloth plan` and `hsloth train`'s start-up check share: the plan's inputs made from the typed train
// options (the same from_config() `train` runs), the shard lengths with the trainer's eval hold-out, the GPU
// by --gpu word or as this process sees it, and train's check (stop before loading weights when the
// predicted peak exceeds the GPU's free memory).
#pragma once

#include <optional>
#include <string>

#include "io/hf_config.h"
#include "plan/plan.h"
#include "train/options.h"

namespace hs::cli {

plan::RunSpec plan_spec(const train::TrainOptions& o, const io::HfConfig& model, int world);
// The training samples' lengths, with data.eval_fraction held out exactly as the trainer does.
plan::Samples plan_samples(const train::TrainOptions& o);

struct GpuChoice {
  std::optional<plan::GpuSpec> gpu;  // nullopt: none known (memory plan only)
  std::string note;                  // why not, or what was detected
  double free_bytes = -1;            // this process's GPU's free memory (-1: not asked)
};
// "auto": GPU `device_index` of this process (matched by name in the table; unknown names get a memory-only
// plan and a note asking for --gpu); otherwise plan::find_gpu, and an hs::Error naming the known words.
GpuChoice choose_gpu(const std::string& word, int device_index);

// `hsloth train`'s check (train.plan_check = on): when the predicted peak allocated memory exceeds the GPU's
// free memory x 1.05 (HSLOTH_PLAN_GPU_MEM=BYTES|NGiB stands in for the free memory, for tests), throws an
// hs::Error with the plan's advice and how to override. Skips on the CPU (unless HSLOTH_PLAN_GPU_MEM is set).
void check_run_fits(const train::TrainOptions& o, bool on_gpu, int device_index, int world);

}  // namespace hs::cli
