// HF tensor-name table (see names.h): two constexpr tables, projections and other slots, and the layer
// prefix; every name is built from them and parsed back against them, so a spelling lives in one place.
#include "model/names.h"

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
constexpr const char* kEmbedModule = "model.embed_tokens.";
constexpr const char* kPeftPrefix = "base_model.model.";

const ProjEntry& entry(Proj p) { return kProjTable[int(p)]; }

// The decimal layer index at the start of `s` up to the next '.', which is consumed; nullopt if none.
std::optional<int> leading_layer(std::string_view& s) {
  size_t dot = s.find('.');
  if (dot == 0 || dot == std::string_view::npos) return std::nullopt;
  int layer = 0;
  for (char c : s.substr(0, dot)) {
    if (c < '0' || c > '9' || layer > 1'000'000) return std::nullopt;
    layer = layer * 10 + (c - '0');
  }
  s.remove_prefix(dot + 1);
  return layer;
}
}  // namespace

const char* proj_name(Proj p) { return entry(p).name; }

std::optional<Proj> parse_proj(std::string_view name) {
  for (const auto& e : kProjTable)
    if (name == e.name) return e.proj;
  return std::nullopt;
}

std::vector<std::string> proj_names() {
  std::vector<std::string> out;
  for (Proj p : kAllProjs) out.emplace_back(proj_name(p));
  return out;
}

std::string proj_names(std::string_view sep) {
  std::string out;
  for (Proj p : kAllProjs) {
    if (!out.empty()) out += sep;
    out += proj_name(p);
  }
  return out;
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
  std::optional<int> layer = leading_layer(m);
  if (!layer) return std::nullopt;
  for (const auto& e : kProjTable)
    if (m == str(e.block, ".", e.name)) return std::make_pair(*layer, e.proj);
  return std::nullopt;
}

std::optional<int> layer_of(std::string_view t) {
  std::string_view prefix = kLayerPrefix;
  if (t.substr(0, prefix.size()) != prefix) return std::nullopt;
  t.remove_prefix(prefix.size());
  return leading_layer(t);
}

bool is_embedding(std::string_view t) { return t.rfind(kEmbedModule, 0) == 0; }

}  // namespace names
}  // namespace hs::model
