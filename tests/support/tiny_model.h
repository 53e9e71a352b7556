// A small random llama HF folder (bf16 safetensors + config.json) for GPU tests of the model and the trainer's
// step: the shape is the caller's, the weights come from at::manual_seed(seed) in a fixed order.
#pragma once

#include <cstdint>
#include <string>

namespace hs::test {

struct TinyLlama {
  int64_t hidden = 256, inter = 512, layers = 8, heads = 4, kv_heads = 2, head_dim = 64, vocab = 512;
  uint64_t seed = 7;
};

// Writes model.safetensors and config.json of `shape` into `dir` (created).
void write_tiny_llama(const std::string& dir, const TinyLlama& shape);

}  // namespace hs::test
