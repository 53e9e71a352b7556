// A tiny llama checkpoint for tests (2 layers, hidden 16, 4 heads / 2 KV heads, intermediate 24, vocab 40,
// untied lm_head, random weights from `seed`), written as model.safetensors + config.json into `dir`.
#pragma once

#include <ATen/ATen.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "io/file.h"
#include "io/safetensors.h"
#include "model/registry.h"
#include "model/tensor_io.h"

namespace hs::test {

inline void write_tiny_llama(const std::string& dir, uint64_t seed) {
  using namespace hs::model;
  hs::io::make_dirs(dir);
  at::manual_seed(seed);
  std::vector<HostTensor> host;
  auto add = [&](const std::string& n, std::vector<int64_t> shape, double scale, double offset = 0) {
    host.push_back(to_host(n, at::randn(shape, at::kFloat) * scale + offset));
  };
  add(names::tensor(Slot::embed), {40, 16}, 1.0);
  add(names::tensor(Slot::final_norm), {16}, 0.1, 1.0);
  add(names::tensor(Slot::lm_head), {40, 16}, 0.3);
  // q, k, v, o, gate, up, down as [out, in]
  const std::pair<int64_t, int64_t> shapes[] = {{16, 16}, {8, 16},  {8, 16}, {16, 16},
                                                {24, 16}, {24, 16}, {16, 24}};
  for (int i = 0; i < 2; ++i) {
    add(names::tensor(Slot::input_norm, i), {16}, 0.1, 1.0);
    add(names::tensor(Slot::post_attn_norm, i), {16}, 0.1, 1.0);
    int k = 0;
    for (Proj p : kAllProjs) {
      add(names::weight(i, p), {shapes[k].first, shapes[k].second}, 0.3);
      ++k;
    }
  }
  std::vector<hs::io::TensorRef> refs;
  for (auto& h : host) refs.push_back(h.ref());
  const std::filesystem::path d(dir);
  hs::io::write_safetensors((d / "model.safetensors").string(), refs, {{"format", "pt"}});
  hs::io::write_file_atomic(
      (d / "config.json").string(),
      R"({"model_type":"llama","hidden_size":16,"intermediate_size":24,"num_hidden_layers":2,
  "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":40,"rms_norm_eps":1e-5,"max_position_embeddings":64})");
}

}  // namespace hs::test
