// Decoding (see generate.h). The Decoder keeps the model's KV cache and feeds it one token at a time; the
// sampler works on the CPU in float32 so that a seed gives the same tokens on any device.
#include "model/generate.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "core/timer.h"

namespace hs::model {

int64_t pick_token(const at::Tensor& logits_row, const Sampling& s, at::Generator& gen) {
  at::Tensor l = logits_row.to(at::kCPU, at::kFloat);
  if (s.greedy || s.temperature == 0) return l.argmax().item<int64_t>();
  l = l / s.temperature;
  if (s.top_k > 0 && s.top_k < l.size(0)) {
    at::Tensor kth = std::get<0>(l.topk(s.top_k)).select(0, s.top_k - 1);
    l = l.masked_fill(l < kth, -INFINITY);
  }
  if (s.top_p < 1.0) {
    auto [sorted, order] = l.sort(/*dim=*/0, /*descending=*/true);
    at::Tensor probs = at::softmax(sorted, 0);
    at::Tensor before = probs.cumsum(0) - probs;  // probability mass ranked above each token
    at::Tensor drop = before > s.top_p;
    drop.index_put_({0}, false);  // always keep the most likely token
    l = l.index_put({order.masked_select(drop)}, at::scalar_tensor(-INFINITY));
  }
  at::Tensor probs = at::softmax(l, 0);
  return at::multinomial(probs, 1, /*replacement=*/false, gen).item<int64_t>();
}

Decoder::Decoder(const Model& model, int64_t capacity, const at::Device& device)
    : model_(model), device_(device), cache_(model.make_cache(1, capacity)) {}

// Only the last position's logits are needed: lm_head runs on one row, not on every prompt position.
at::Tensor Decoder::next_logits() {
  return model_.lm_head(model_.hidden_states(in_, &cache_).select(1, -1)).squeeze(0);
}

at::Tensor Decoder::prefill(std::span<const int64_t> prompt) {
  in_.input_ids =
      at::tensor(std::vector<int64_t>(prompt.begin(), prompt.end()), at::kLong).view({1, -1}).to(device_);
  return next_logits();
}

at::Tensor Decoder::step(int64_t token) {
  in_.input_ids = at::full({1, 1}, token, at::TensorOptions().dtype(at::kLong).device(device_));
  return next_logits();
}

Generated generate(const Model& model, std::span<const int64_t> prompt, int64_t max_new, const Sampling& s,
                   uint64_t seed, const std::set<int64_t>& eos, const at::Device& device,
                   const std::function<void(int64_t)>& on_token) {
  Generated g;
  at::Generator gen = at::detail::createCPUGenerator(seed);
  Decoder dec(model, int64_t(prompt.size()) + max_new, device);
  Timer timer;
  at::Tensor logits = dec.prefill(prompt);
  g.prefill_s = timer.seconds();
  for (int64_t k = 0; k < max_new; ++k) {
    const int64_t next = pick_token(logits, s, gen);
    g.tokens.push_back(int32_t(next));
    if (on_token) on_token(next);
    if (eos.count(next)) {
      g.stop = "eos";
      break;
    }
    logits = dec.step(next);
  }
  g.decode_s = timer.seconds() - g.prefill_s;
  return g;
}

bool greedy_reproduces(const Model& model, std::span<const int64_t> prompt, std::span<const int64_t> expected,
                       const at::Device& device) {
  Decoder dec(model, int64_t(prompt.size() + expected.size()), device);
  at::Tensor logits = dec.prefill(prompt);
  for (size_t k = 0; k < expected.size(); ++k) {
    const int64_t next = logits.argmax().item<int64_t>();
    if (next != expected[k]) return false;
    if (k + 1 < expected.size()) logits = dec.step(next);
  }
  return true;
}

}  // namespace hs::model
