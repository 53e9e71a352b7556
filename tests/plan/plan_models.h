// Test models for the plan tests: a config.json and random weights for every tensor it implies (names and
// shapes from the model's registry), written into a temporary folder.
#pragma once

#include <ATen/ATen.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "io/file.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/registry.h"
#include "model/tensor_io.h"

namespace hs::test {

// Random weights for every tensor the config implies (names and shapes from the model's registry). The folder
// is this process's own (ctest runs the parameterized instances side by side) and is removed at exit.
inline std::string write_plan_model(const std::string& name, const char* config_json) {
  struct Cleanup {
    std::vector<std::string> dirs;
    ~Cleanup() {
      std::error_code ec;
      for (const auto& d : dirs) std::filesystem::remove_all(d, ec);
    }
  };
  static Cleanup cleanup;
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("hs_plan_" + name + "_" + std::to_string(::getpid())))
                              .string();
  std::filesystem::remove_all(dir);
  hs::io::make_dirs(dir);
  cleanup.dirs.push_back(dir);
  hs::io::write_file_atomic(dir + "/config.json", config_json);
  const hs::io::HfConfig c = hs::io::load_hf_config(dir);
  at::manual_seed(3);
  std::vector<hs::model::HostTensor> host;
  auto add = [&](const std::string& n, std::vector<int64_t> shape) {
    host.push_back(hs::model::to_host(n, at::randn(shape, at::kFloat) * 0.1));
  };
  using hs::model::Slot;
  add(hs::model::names::tensor(Slot::embed), {c.vocab_size, c.hidden_size});
  add(hs::model::names::tensor(Slot::final_norm), {c.hidden_size});
  if (!c.tie_word_embeddings) add(hs::model::names::tensor(Slot::lm_head), {c.vocab_size, c.hidden_size});
  for (int i = 0; i < int(c.num_hidden_layers); ++i) {
    add(hs::model::names::tensor(Slot::input_norm, i), {c.hidden_size});
    add(hs::model::names::tensor(Slot::post_attn_norm, i), {c.hidden_size});
    if (c.qk_norm) {
      add(hs::model::names::tensor(Slot::q_norm, i), {c.head_dim});
      add(hs::model::names::tensor(Slot::k_norm, i), {c.head_dim});
    }
    for (hs::model::Proj p : hs::model::kAllProjs) {
      auto [out, in] = hs::model::proj_shape(c, p);
      add(hs::model::names::weight(i, p), {out, in});
      if (hs::model::proj_has_bias(c, p)) add(hs::model::names::bias(i, p), {out});
    }
  }
  std::vector<hs::io::TensorRef> refs;
  for (auto& h : host) refs.push_back(h.ref());
  hs::io::write_safetensors(dir + "/model.safetensors", refs, {{"format", "pt"}});
  return dir;
}

}  // namespace hs::test
