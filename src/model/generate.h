// Decoding, written once for `hsloth generate` and the trainer's exact-match eval: a KV-cached Decoder (the
// prompt is run once to fill the cache, then one token at a time; only the last position goes through
// lm_head), the token choice (greedy argmax, or transformers' sampling order: temperature, top-k, top-p,
// then a draw from a seeded generator), a generation loop with a per-token callback, and the greedy
// exact-match check.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "model/model.h"

namespace hs::model {

struct Sampling {
  bool greedy = false;  // argmax (also when temperature is 0)
  double temperature = 0.7;
  double top_p = 0.9;  // 1: off
  int64_t top_k = 0;   // 0: off
};

// The next token from one row of logits [vocab] (any device/dtype; chosen in float32 on the CPU).
int64_t pick_token(const at::Tensor& logits_row, const Sampling& s, at::Generator& gen);

// One sequence decoded with a KV cache of `capacity` positions. Call under at::NoGradGuard.
class Decoder {
 public:
  Decoder(const Model& model, int64_t capacity, const at::Device& device);
  // Runs the prompt; returns the logits [vocab] of the token after it.
  at::Tensor prefill(std::span<const int64_t> prompt);
  // Appends `token`; returns the logits [vocab] of the token after it.
  at::Tensor step(int64_t token);

 private:
  at::Tensor next_logits();
  const Model& model_;
  at::Device device_;
  KvCache cache_;
  Inputs in_;
};

struct Generated {
  std::vector<int32_t> tokens;
  std::string stop = "max-new";  // or "eos"
  double prefill_s = 0, decode_s = 0;
};

// Up to max_new tokens after `prompt`, stopping after an `eos` token; on_token(t) is called after each.
Generated generate(const Model& model, std::span<const int64_t> prompt, int64_t max_new, const Sampling& s,
                   uint64_t seed, const std::set<int64_t>& eos, const at::Device& device,
                   const std::function<void(int64_t)>& on_token = {});

// Whether greedy decoding after `prompt` produces exactly `expected` (stops at the first miss).
bool greedy_reproduces(const Model& model, std::span<const int64_t> prompt, std::span<const int64_t> expected,
                       const at::Device& device);

}  // namespace hs::model
