// The Llama-family registry: the HF tensor and projection names (model/names.h, torch-free, so the config
// library shares them) and what the names need a config for, the shapes and biases of the projections.
// Everything that reads or writes weights (model loading, LoRA adapters in PEFT's naming, merge) asks it;
// no other file spells an HF tensor name.
#pragma once

#include <cstdint>
#include <utility>

#include "io/hf_config.h"
#include "model/names.h"

namespace hs::model {

// {out_features, in_features} of a projection's weight, and whether it has a bias, for a config.
std::pair<int64_t, int64_t> proj_shape(const io::HfConfig& config, Proj proj);
bool proj_has_bias(const io::HfConfig& config, Proj proj);

}  // namespace hs::model
