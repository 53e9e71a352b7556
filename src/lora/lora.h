// LoRA as a wrapper around a frozen base projection (torchtune's shape, not a fork of the model):
//   y = base(x) + lora_B(lora_A(dropout(x))) * scaling,   scaling = alpha / r  (alpha / sqrt(r) with rsLoRA)
// with PEFT's initialisation (A: kaiming_uniform_(a=sqrt(5)) exactly as torch.nn.Linear's default init,
// drawn in PEFT's order from a seeded CPU generator; B: zeros). The base never gets gradients.
//
// The Adapter is the contract the trainer and the CLI use: it wraps the targeted projections of a Model,
// lists its trainable tensors under their PEFT names, saves and loads PEFT's own files
// (adapter_model.safetensors + adapter_config.json, so PEFT, vLLM and transformers load ours and we load
// theirs), validates missing/unexpected tensors on load, and merges (W += scaling * B A) for `merge`.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/linear.h"
#include "model/model.h"
#include "model/registry.h"

namespace hs::lora {

struct LoraConfig {
  int64_t r = 16;
  double alpha = 32;
  double dropout = 0.0;
  bool use_rslora = false;
  std::vector<model::Proj> targets = {model::Proj::q,    model::Proj::k,  model::Proj::v,   model::Proj::o,
                                      model::Proj::gate, model::Proj::up, model::Proj::down};
  std::vector<int> layers;              // layers_to_transform; empty = every layer
  std::string base_model_name_or_path;  // written into adapter_config.json
  double scaling() const;
  bool targets_layer(int layer) const;
  bool targets_proj(model::Proj p) const;
};

// Parses target names ("q_proj", ...; "all-linear" = all seven) as `lora.targets` in a config gives them.
std::vector<model::Proj> parse_targets(const std::vector<std::string>& names);

class LoraLinear final : public model::Projection {
 public:
  LoraLinear(std::shared_ptr<model::Projection> base, at::Tensor a, at::Tensor b, double scaling,
             double dropout);
  at::Tensor forward(const at::Tensor& x, bool training) const override;
  int64_t in_features() const override { return base_->in_features(); }
  int64_t out_features() const override { return base_->out_features(); }
  const model::DenseLinear* dense() const override { return base_->dense(); }
  const model::Projection* packed_base() const override { return base_->packed_base(); }
  std::optional<model::LowRank> low_rank() const override { return model::LowRank{a, b, scaling, dropout}; }
  const std::shared_ptr<model::Projection>& base() const { return base_; }

  at::Tensor a;  // lora_A.weight [r, in], trainable
  at::Tensor b;  // lora_B.weight [out, r], trainable
  double scaling, dropout;

 private:
  std::shared_ptr<model::Projection> base_;
  const model::DenseLinear* dense_ = nullptr;  // the base when it is dense (fused path)
};

// W + scaling * (B @ A), computed in float32 and returned in W's dtype.
at::Tensor merge_weight(const at::Tensor& w, const at::Tensor& a, const at::Tensor& b, double scaling);

// A PEFT adapter folder opened and validated against a model config without building the model (merge
// uses it; Adapter::load too): adapter_config.json parsed, every targeted module's lora_A/lora_B present
// with the right shape, nothing unexpected.
class AdapterFile {
 public:
  static AdapterFile open(const std::string& dir, const io::HfConfig& config);
  struct Pair {
    const io::TensorInfo* a = nullptr;  // lora_A.weight [r, in]
    const io::TensorInfo* b = nullptr;  // lora_B.weight [out, r]
  };
  const LoraConfig& config() const { return config_; }
  // The pair for a module, or nullptr when the adapter does not target it.
  const Pair* find(int layer, model::Proj proj) const;
  size_t num_modules() const { return pairs_.size(); }
  const io::Checkpoint& checkpoint() const { return ck_; }

 private:
  io::Checkpoint ck_;
  LoraConfig config_;
  std::map<std::pair<int, int>, Pair> pairs_;
};

// The Adapter keeps a pointer to its Model: keep the Model in place (do not move it) while the Adapter
// is used; the LoRA modules themselves live in the model's layers.
class Adapter {
 public:
  // Wraps every targeted projection of `model` with a fresh LoRA. `seed` drives PEFT's init order: for each
  // targeted module in transformers' order, nn.Linear default draws for A then B, then A's kaiming draw
  // (so torch.manual_seed(seed) + get_peft_model gives the same A).
  static Adapter create(model::Model& model, const LoraConfig& config, uint64_t seed,
                        at::ScalarType dtype = at::kFloat);
  // Loads a PEFT adapter folder onto `model`. Unsupported options (DoRA, bias, modules_to_save, rank
  // patterns, ...) and missing/unexpected/misshaped tensors are errors naming the key or tensor.
  static Adapter load(model::Model& model, const std::string& dir, at::ScalarType dtype = at::kFloat);
  // adapter_config.json -> LoraConfig (validated for `num_layers` layers).
  static LoraConfig read_config(const std::string& dir, int num_layers);

  Adapter(Adapter&&) noexcept = default;
  Adapter& operator=(Adapter&&) noexcept = default;

  const LoraConfig& config() const { return config_; }
  // The trainable tensors under their PEFT names (base_model.model.<module>.lora_A.weight, ...), in module
  // order, A before B.
  std::vector<model::NamedTensor> trainable() const;
  int64_t num_parameters() const;
  // Writes adapter_model.safetensors + adapter_config.json (atomically) into `dir` (created if needed).
  void save(const std::string& dir) const;
  // Folds every LoRA into its base weight and unwraps the projections; the adapter is empty afterwards.
  void merge_into_model();

  struct Entry {
    int layer;
    model::Proj proj;
    std::shared_ptr<LoraLinear> module;
  };
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  Adapter() = default;
  model::Model* model_ = nullptr;
  LoraConfig config_;
  std::vector<Entry> entries_;
};

// A model for inference (eval, generate): the base from `model_dir` plus, when `adapter_dir` is not empty,
// a PEFT adapter, merged into the weights (merge = true: plain projections, fastest) or kept as LoRA
// branches (merge = false: PEFT's exact unmerged arithmetic).
model::Model load_for_inference(const std::string& model_dir, const std::string& adapter_dir,
                                const model::LoadOptions& options, bool merge);

// The adapter_config.json text PEFT writes for `config` (inference_mode as given).
std::string adapter_config_json(const LoraConfig& config, bool inference_mode = true);

}  // namespace hs::lora
