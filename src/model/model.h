// The Llama-family decoder (Llama 2/3, TinyLlama, Mistral, Qwen2, Qwen3) as plain structs holding
// at::Tensor weights and a functional forward with autograd; no torch::nn::Module. Per layer:
// RMSNorm -> attention (q/k/v/o, GQA, Qwen2 q/k/v bias, Qwen3 per-head q/k RMSNorm before RoPE, RoPE incl.
// llama3 scaling, causal SDPA over packed rows) -> residual -> RMSNorm -> SwiGLU MLP -> residual; final
// norm; lm_head (tied to the embedding or not). Every hot op goes through model/ops.h.
//
// Weights come from safetensors through the mmap reader, converted tensor by tensor to the run dtype
// (fp32 or bf16 on CPU, bf16 on GPU). Base weights are frozen (requires_grad false) unless
// set_full_finetune(true). Projections are model::Projection objects so LoRA (hs::lora) or a quantized
// base can wrap them without touching this code.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "io/hf_config.h"
#include "model/linear.h"
#include "model/ops.h"
#include "model/registry.h"

namespace hs::io {
class Checkpoint;
}

namespace hs::model {

// What a projection factory gets for each of a layer's seven projections while Model::load runs.
struct ProjectionSource {
  int layer = 0;
  Proj proj = Proj::q;
  const io::Checkpoint* checkpoint = nullptr;  // the opened base checkpoint
  std::string weight_name, bias_name;          // HF names; bias_name empty when the projection has none
  std::vector<int64_t> shape;                  // expected weight shape [out, in]
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;  // the run dtype
  // The dense weight / bias as the default DenseLinear gets them (shape and dtype checked, converted to the
  // run dtype on the device; load_bias() is undefined without a bias). Both mark their tensor as used.
  std::function<at::Tensor()> load_weight, load_bias;
  // Marks another checkpoint tensor as read (so it is not reported as unused).
  std::function<void(const std::string&)> mark_used;
};
using ProjectionFactory = std::function<std::shared_ptr<Projection>(const ProjectionSource&)>;

struct LoadOptions {
  at::ScalarType dtype = at::kFloat;  // run dtype of weights and activations
  at::Device device = at::kCPU;
  // Builds each projection (a quantized base: hs::quant); null = DenseLinear from the dense weights. A folder
  // whose config.json has a quantization_config needs one (Model::load refuses it otherwise).
  ProjectionFactory projection_factory;
};

struct Layer {
  at::Tensor input_norm, post_attn_norm;            // [hidden]
  at::Tensor q_norm, k_norm;                        // [head_dim], qwen3 only
  std::array<std::shared_ptr<Projection>, 7> proj;  // indexed by Proj
  Projection& operator[](Proj p) const { return *proj[size_t(p)]; }
};

// A batch for the forward pass.
struct Inputs {
  at::Tensor input_ids;     // [B, T] integer
  at::Tensor position_ids;  // [B, T] int64; undefined: from cu_seqlens (restart at each sample), else 0..T-1
                            // (after a KV cache's length when decoding)
  at::Tensor cu_seqlens;    // packed rows (see ops::AttentionLayout); undefined = one sequence per row
};

// Position ids that restart at 0 at every sample start given by cu_seqlens over [B*T] tokens.
at::Tensor packed_position_ids(const at::Tensor& cu_seqlens, int64_t batch, int64_t seq_len);

// Keys and values of past tokens, preallocated for `capacity` positions.
class KvCache {
 public:
  KvCache() = default;
  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  void reset() { length_ = 0; }

 private:
  friend class Model;
  std::vector<at::Tensor> k_, v_;  // per layer [B, KV, capacity, D]
  int64_t length_ = 0, capacity_ = 0;
};

struct NamedTensor {
  std::string name;  // HF name
  at::Tensor tensor;
};

class Model {
 public:
  // `path`: an HF folder (config.json + safetensors). Missing tensors and shape mismatches are errors
  // naming the tensor; extra tensors are counted and reported.
  static Model load(const std::string& path, const LoadOptions& options = {});

  const io::HfConfig& config() const { return config_; }
  const LoadOptions& options() const { return options_; }
  int num_layers() const { return int(layers_.size()); }
  Layer& layer(int i) { return layers_.at(size_t(i)); }
  const Layer& layer(int i) const { return layers_.at(size_t(i)); }
  bool tied() const { return tied_; }
  const at::Tensor& embed_weight() const { return embed_; }
  const at::Tensor& final_norm_weight() const { return norm_; }
  const at::Tensor& lm_head_weight() const { return lm_head_; }
  const std::string& path() const { return path_; }

  void set_training(bool training) { training_ = training; }
  bool training() const { return training_; }

  // Building blocks (the trainer may run layers itself, e.g. with activation checkpointing).
  at::Tensor embed(const at::Tensor& input_ids) const;
  // One decoder layer. `positions` [B, T] int64 and `layout` describe the batch; with a cache, k/v are
  // appended at the cache's current length (the caller advances it once all layers ran).
  at::Tensor layer_forward(int i, const at::Tensor& hidden, const at::Tensor& positions,
                           const ops::AttentionLayout& layout, KvCache* cache = nullptr) const;
  at::Tensor final_norm(const at::Tensor& hidden) const;
  at::Tensor lm_head(const at::Tensor& hidden) const;  // logits in the run dtype

  // Final-norm hidden states [B, T, hidden]. With a cache: decodes after the cached tokens and advances it.
  at::Tensor hidden_states(const Inputs& inputs, KvCache* cache = nullptr) const;
  // Logits [B, T, vocab] (run dtype).
  at::Tensor forward(const Inputs& inputs, KvCache* cache = nullptr) const;
  // Token-sum cross-entropy over targets t with loss_mask[b, t] = 1 (token t predicted from tokens < t;
  // t = 0 and the first token of each packed sample never count), and the target count. Only the
  // targeted positions go through lm_head.
  ops::LossSum loss(const Inputs& inputs, const at::Tensor& loss_mask) const;
  ops::LossSum loss_from_hidden(const at::Tensor& hidden, const at::Tensor& input_ids,
                                const at::Tensor& positions, const at::Tensor& loss_mask) const;

  KvCache make_cache(int64_t batch, int64_t capacity) const;

  // Every base tensor under its HF name (lm_head omitted when tied), looking through adapter wrappers
  // to the dense base weights (throws for a non-dense base).
  std::vector<NamedTensor> named_parameters() const;
  // Full fine-tuning: every base tensor trainable (true) or frozen (false, the default).
  void set_full_finetune(bool on);

  // How each decoder layer is run by hidden_states(): by default directly; a runner may wrap the call
  // (the trainer's gradient checkpointing). The runner gets the layer index, its input and the call.
  using LayerCall = std::function<at::Tensor(const at::Tensor&)>;
  using LayerRunner = std::function<at::Tensor(int, const at::Tensor&, const LayerCall&)>;
  void set_layer_runner(LayerRunner runner) { runner_ = std::move(runner); }

 private:
  void ensure_rope(int64_t positions) const;

  io::HfConfig config_;
  LoadOptions options_;
  std::string path_;
  at::Tensor embed_, norm_, lm_head_;
  bool tied_ = false;
  bool training_ = false;
  std::vector<Layer> layers_;
  mutable ops::RopeTable rope_;
  LayerRunner runner_;
};

}  // namespace hs::model
