// A small random llama HF folder (safetensors + config.json) for tests of the model and the trainer's step:
// the shape is the caller's, the weights come from at::manual_seed(seed) in a fixed order: embedding, final
// norm and lm_head, then per layer the two norms and the seven projections in kAllProjs order (norms ~ 1 +
// 0.1 N(0,1), embedding N(0,1), projections and head scale x N(0,1)), stored in `dtype`. Header-only: the CPU
// tests' tiny_llama.h and the GPU tests share it.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "model/names.h"
#include "model/tensor_io.h"

namespace hs::test {

struct TinyLlama {
  int64_t hidden = 256, inter = 512, layers = 8, heads = 4, kv_heads = 2, head_dim = 64, vocab = 512;
  uint64_t seed = 7;
  at::ScalarType dtype = at::kBFloat16;
  double proj_scale = 0.05, head_scale = 0.05;
  int64_t max_positions = 8192;
};

// Writes model.safetensors and config.json of `shape` into `dir` (created).
inline void write_tiny_llama(const std::string& dir, const TinyLlama& s) {
  using namespace hs::model;
  hs::io::make_dirs(dir);
  at::manual_seed(s.seed);
  std::vector<HostTensor> host;
  auto add = [&](const std::string& n, std::vector<int64_t> shape, double scale, double offset = 0) {
    host.push_back(to_host(n, (at::randn(shape, at::kFloat) * scale + offset).to(s.dtype)));
  };
  add(names::tensor(Slot::embed), {s.vocab, s.hidden}, 1.0);
  add(names::tensor(Slot::final_norm), {s.hidden}, 0.1, 1.0);
  add(names::tensor(Slot::lm_head), {s.vocab, s.hidden}, s.head_scale);
  const int64_t q = s.heads * s.head_dim, kv = s.kv_heads * s.head_dim;
  const std::pair<int64_t, int64_t> shapes[] = {{q, s.hidden},       {kv, s.hidden},      {kv, s.hidden},
                                                {s.hidden, q},       {s.inter, s.hidden}, {s.inter, s.hidden},
                                                {s.hidden, s.inter}};
  for (int i = 0; i < int(s.layers); ++i) {
    add(names::tensor(Slot::input_norm, i), {s.hidden}, 0.1, 1.0);
    add(names::tensor(Slot::post_attn_norm, i), {s.hidden}, 0.1, 1.0);
    int k = 0;
    for (Proj p : kAllProjs) {
      add(names::weight(i, p), {shapes[k].first, shapes[k].second}, s.proj_scale);
      ++k;
    }
  }
  std::vector<hs::io::TensorRef> refs;
  for (auto& h : host) refs.push_back(h.ref());
  const std::filesystem::path d(dir);
  hs::io::write_safetensors((d / "model.safetensors").string(), refs, {{"format", "pt"}});
  hs::io::write_file_atomic(
      (d / "config.json").string(),
      hs::str(R"({"model_type":"llama","hidden_size":)", s.hidden, R"(,"intermediate_size":)", s.inter,
              R"(,"num_hidden_layers":)", s.layers, R"(,"num_attention_heads":)", s.heads,
              R"(,"num_key_value_heads":)", s.kv_heads, R"(,"head_dim":)", s.head_dim, R"(,"vocab_size":)",
              s.vocab, R"(,"rms_norm_eps":1e-5,"max_position_embeddings":)", s.max_positions, "}"));
}

}  // namespace hs::test
