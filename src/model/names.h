// The one table of Hugging Face tensor and projection names for the Llama family (llama, mistral, qwen2,
// qwen3 share them): strings and enums only, no LibTorch and no model config, so the config library (which
// must not link LibTorch) validates `lora.targets` from it, and the model, LoRA adapters in PEFT's naming,
// merge and the trainer ask it; no other file spells an HF tensor name. model/registry.h adds the shapes.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hs::model {

// The seven linear projections of a decoder layer, in transformers' module order.
enum class Proj { q, k, v, o, gate, up, down };
inline constexpr std::array<Proj, 7> kAllProjs = {Proj::q,    Proj::k,  Proj::v,   Proj::o,
                                                  Proj::gate, Proj::up, Proj::down};

// "q_proj", "gate_proj", ... (the names PEFT's target_modules use).
const char* proj_name(Proj proj);
std::optional<Proj> parse_proj(std::string_view name);
// Every projection's name in kAllProjs order, and joined by `sep` ("q_proj k_proj ... down_proj").
std::vector<std::string> proj_names();
std::string proj_names(std::string_view sep);

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
// The layer index of a per-layer tensor ("model.layers.12.mlp.up_proj.weight" -> 12); nullopt for global
// tensors and other names.
std::optional<int> layer_of(std::string_view tensor);
// Whether a tensor belongs to the token embedding ("model.embed_tokens.weight").
bool is_embedding(std::string_view tensor);
}  // namespace names

}  // namespace hs::model
