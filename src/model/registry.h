// The one table of Hugging Face tensor names for the Llama family (llama, mistral, qwen2, qwen3 share
// them). Everything that reads or writes weights (model loading, LoRA adapters in PEFT's naming, merge)
// asks this table; no other file spells an HF tensor name.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "io/hf_config.h"

namespace hs::model {

// The seven linear projections of a decoder layer, in transformers' module order.
enum class Proj { q, k, v, o, gate, up, down };
inline constexpr std::array<Proj, 7> kAllProjs = {Proj::q,    Proj::k,  Proj::v,   Proj::o,
                                                  Proj::gate, Proj::up, Proj::down};

// "q_proj", "gate_proj", ... (the names PEFT's target_modules use).
const char* proj_name(Proj proj);
std::optional<Proj> parse_proj(std::string_view name);

// {out_features, in_features} of a projection's weight, and whether it has a bias, for a config.
std::pair<int64_t, int64_t> proj_shape(const io::HfConfig& config, Proj proj);
bool proj_has_bias(const io::HfConfig& config, Proj proj);

// Per-layer and global weights other than the projections.
enum class Slot { embed, final_norm, lm_head, input_norm, post_attn_norm, q_norm, k_norm };

namespace names {
// Global tensors ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"); per-layer ones
// with the layer index ("model.layers.3.input_layernorm.weight").
std::string tensor(Slot slot, int layer = -1);
// The module path of a projection ("model.layers.3.self_attn.q_proj", "model.layers.3.mlp.down_proj");
// its tensors are "<module>.weight" and "<module>.bias".
std::string module(int layer, Proj proj);
std::string weight(int layer, Proj proj);
std::string bias(int layer, Proj proj);
// PEFT adapter tensor names: "base_model.model.<module>.lora_A.weight" / ".lora_B.weight".
std::string lora_a(int layer, Proj proj);
std::string lora_b(int layer, Proj proj);
// Parses "model.layers.<i>.<...>.<proj>" back into (layer, proj); nullopt when it is not a projection path.
std::optional<std::pair<int, Proj>> parse_module(std::string_view module);
}  // namespace names

}  // namespace hs::model
