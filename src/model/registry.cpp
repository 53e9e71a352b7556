// HF tensor-name table; see registry.h.
#include "model/registry.h"

#include "core/error.h"

namespace hs::model {

namespace {
struct ProjEntry {
  Proj proj;
  const char* name;
  const char* block;  // "self_attn" or "mlp"
};
constexpr ProjEntry kProjTable[] = {
    {Proj::q, "q_proj", "self_attn"}, {Proj::k, "k_proj", "self_attn"}, {Proj::v, "v_proj", "self_attn"},
    {Proj::o, "o_proj", "self_attn"}, {Proj::gate, "gate_proj", "mlp"}, {Proj::up, "up_proj", "mlp"},
    {Proj::down, "down_proj", "mlp"},
};

struct SlotEntry {
  Slot slot;
  const char* pattern;  // {i} = layer index
};
constexpr SlotEntry kSlotTable[] = {
    {Slot::embed, "model.embed_tokens.weight"},
    {Slot::final_norm, "model.norm.weight"},
    {Slot::lm_head, "lm_head.weight"},
    {Slot::input_norm, "model.layers.{i}.input_layernorm.weight"},
    {Slot::post_attn_norm, "model.layers.{i}.post_attention_layernorm.weight"},
    {Slot::q_norm, "model.layers.{i}.self_attn.q_norm.weight"},
    {Slot::k_norm, "model.layers.{i}.self_attn.k_norm.weight"},
};
constexpr const char* kLayerPrefix = "model.layers.";
constexpr const char* kPeftPrefix = "base_model.model.";

const ProjEntry& entry(Proj p) { return kProjTable[int(p)]; }
}  // namespace

const char* proj_name(Proj p) { return entry(p).name; }

std::optional<Proj> parse_proj(std::string_view name) {
  for (const auto& e : kProjTable)
    if (name == e.name) return e.proj;
  return std::nullopt;
}

std::pair<int64_t, int64_t> proj_shape(const io::HfConfig& c, Proj p) {
  switch (p) {
    case Proj::q:
      return {c.q_dim(), c.hidden_size};
    case Proj::k:
    case Proj::v:
      return {c.kv_dim(), c.hidden_size};
    case Proj::o:
      return {c.hidden_size, c.q_dim()};
    case Proj::gate:
    case Proj::up:
      return {c.intermediate_size, c.hidden_size};
    case Proj::down:
      return {c.hidden_size, c.intermediate_size};
  }
  return {0, 0};
}

bool proj_has_bias(const io::HfConfig& c, Proj p) {
  switch (p) {
    case Proj::q:
    case Proj::k:
    case Proj::v:
      return c.qkv_bias;
    case Proj::o:
      return c.o_bias;
    default:
      return c.mlp_bias;
  }
}

namespace names {

std::string tensor(Slot slot, int layer) {
  std::string s = kSlotTable[int(slot)].pattern;
  auto pos = s.find("{i}");
  if (pos != std::string::npos) {
    HS_CHECK(layer >= 0, "layer index needed for ", s);
    s.replace(pos, 3, std::to_string(layer));
  }
  return s;
}

std::string module(int layer, Proj proj) {
  return str(kLayerPrefix, layer, ".", entry(proj).block, ".", entry(proj).name);
}
std::string weight(int layer, Proj proj) { return module(layer, proj) + ".weight"; }
std::string bias(int layer, Proj proj) { return module(layer, proj) + ".bias"; }
std::string lora_a(int layer, Proj proj) { return kPeftPrefix + module(layer, proj) + ".lora_A.weight"; }
std::string lora_b(int layer, Proj proj) { return kPeftPrefix + module(layer, proj) + ".lora_B.weight"; }

std::optional<std::pair<int, Proj>> parse_module(std::string_view m) {
  std::string_view prefix = kLayerPrefix;
  if (m.substr(0, prefix.size()) != prefix) return std::nullopt;
  m.remove_prefix(prefix.size());
  size_t dot = m.find('.');
  if (dot == 0 || dot == std::string_view::npos) return std::nullopt;
  int layer = 0;
  for (char c : m.substr(0, dot)) {
    if (c < '0' || c > '9' || layer > 1'000'000) return std::nullopt;
    layer = layer * 10 + (c - '0');
  }
  m.remove_prefix(dot + 1);
  for (const auto& e : kProjTable)
    if (m == str(e.block, ".", e.name)) return std::make_pair(layer, e.proj);
  return std::nullopt;
}

}  // namespace names
}  // namespace hs::model
