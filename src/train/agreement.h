// What the ranks of a training job must share, as facts for dist::check_ranks_agree (see dist/agree.h):
// at start-up (before the communicator, the model load and any collective): the build, the device kind, the
// resolved config (every key but the input paths, whose contents are compared instead: ranks may see one
// model or shard folder at different paths), the model's config.json key by key and its weight names,
// dtypes and shapes (safetensors headers only), the tokenizer.json sha256, and the shard manifests; after the
// plan and the resume: the world-dependent plan (steps, micro-batches) and the resumed step and parameters.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "config/config.h"
#include "dist/agree.h"
#include "train/options.h"

namespace hs::data {
class BatchPlan;
}

namespace hs::train {

// `cfg` gives the resolved config (every key and its origin, compared as text); `o` the inputs to look into.
std::vector<dist::Fact> startup_facts(const config::Config& cfg, const TrainOptions& o,
                                      const std::string& device_kind);

// The plan of this rank's world and where training starts (resumed step, checksum of the parameters).
std::vector<dist::Fact> plan_facts(const data::BatchPlan& plan, int64_t total_steps, int64_t start_step,
                                   const at::Tensor& master);

// Start-up check of a training job: the facts above, compared across ranks; throws naming what differs.
void check_startup_agreement(const config::Config& cfg, const TrainOptions& o,
                             const std::string& device_kind);

}  // namespace hs::train
