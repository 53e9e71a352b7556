// Checkpoints that survive crashes: run.dir/checkpoints/step-N/ holds the PEFT adapter (adapter_model.
// safetensors + adapter_config.json, loadable by PEFT as is), train_state.safetensors (fp32 master
// parameters, AdamW moments, RNG states; metadata: format, version, step, world size, seed, config) and
// COMPLETE (sha256 of every file), written last. The folder is built as .tmp-step-N, every file fsynced,
// then renamed: a crash leaves either a whole checkpoint or a temp folder that is ignored and cleaned; a
// failed write (full disk) removes the temp folder and is one error naming the file and the last good step.
// `resume = auto` takes the newest checkpoint whose COMPLETE verifies and warns about each one skipped.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace hs::train {

inline constexpr const char* kStateFormat = "hsloth-train-state";
inline constexpr int kStateVersion = 1;

struct TrainState {
  int64_t step = 0;  // optimizer steps done
  int world_size = 1;
  uint64_t seed = 0;
  std::string config_ini;                    // the resolved config of the run that wrote it
  at::Tensor master, exp_avg, exp_avg_sq;    // fp32 flat, on CPU (loaded in part: the parts, concatenated)
  int64_t flat_numel = 0;                    // loaded: values of each in the file
  at::Tensor rng_cpu;                        // uint8 state of the default CPU generator
  std::map<std::string, std::string> extra;  // more metadata (finetune, numel, names hash, ...)
};

// Writes checkpoints/step-N atomically; `write_adapter(dir)` writes the model files into the temp folder.
// Keeps the newest `keep` checkpoints. Returns the final folder.
std::string save_checkpoint(const std::string& run_dir, const TrainState& state,
                            const std::function<void(const std::string&)>& write_adapter, int keep);

// Reads and verifies a checkpoint folder; throws hs::Error naming the file on any problem.
TrainState load_checkpoint(const std::string& dir);
// The same with master and the moments holding only the flat ranges (begin, count), concatenated in the given
// order, read from the mapped file: a ZeRO-1 rank's shard, without the whole state in host memory. A range
// past the file's values is an error.
TrainState load_checkpoint_part(const std::string& dir, const std::vector<std::pair<int64_t, int64_t>>& ranges);

// The newest valid checkpoint under run_dir/checkpoints, skipping (with a warning) damaged ones.
std::optional<std::string> find_latest_checkpoint(const std::string& run_dir);

// The same, with the damaged checkpoints seen on the way (folder, what is wrong), newest first.
struct CheckpointScan {
  std::optional<std::string> latest;
  std::vector<std::pair<std::string, std::string>> damaged;
};
CheckpointScan scan_checkpoints(const std::string& run_dir);

}  // namespace hs::train
