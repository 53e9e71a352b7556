// The model-loading flags `eval` and `generate` share (--device, --dtype, --quant): declared, read and turned
// into model::LoadOptions in one place, so the two commands load a model the same way.
#pragma once

#include <string>

#include "config/config.h"
#include "model/model.h"

namespace hs::cli {

struct ModelFlags {
  std::string device, dtype;  // model::resolve_device / resolve_dtype words
  bool nf4 = false;           // --quant nf4
};

void add_model_flags(config::Schema& s);
ModelFlags read_model_flags(const config::Config& cfg);
// Device (the node-local rank picks the GPU), dtype, and the NF4 projection factory when --quant nf4 is given
// or `model_dir` is a pre-quantized folder.
model::LoadOptions load_options(const ModelFlags& flags, const std::string& model_dir, int local_rank = 0);

}  // namespace hs::cli
