// A tiny llama checkpoint for tests (2 layers, hidden 16, 4 heads / 2 KV heads, intermediate 24, vocab 40,
// untied lm_head, random float32 weights from `seed`), written as model.safetensors + config.json into `dir`
// by support/tiny_model.h.
#pragma once

#include <cstdint>
#include <string>

#include "support/tiny_model.h"

namespace hs::test {

inline void write_tiny_llama(const std::string& dir, uint64_t seed) {
  TinyLlama s;
  s.hidden = 16, s.inter = 24, s.layers = 2, s.heads = 4, s.kv_heads = 2, s.head_dim = 4, s.vocab = 40;
  s.seed = seed;
  s.dtype = at::kFloat;
  s.proj_scale = s.head_scale = 0.3;
  s.max_positions = 64;
  write_tiny_llama(dir, s);
}

}  // namespace hs::test
