// LoraLinear and the PEFT adapter contract; see lora.h. adapter_config.json is read with PEFT's matching
// rules (target list = module-name suffixes, a string = full-match regex, "all-linear", exclude_modules,
// layers_to_transform) restricted to what this engine can run; anything else is refused by key.
#include "lora/lora.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "core/error.h"
#include "core/log.h"
#include "io/file.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "model/tensor_io.h"

namespace hs::lora {
namespace fs = std::filesystem;
using json = nlohmann::json;
using model::Proj;

// ---- config ---------------------------------------------------------------------------------------

double LoraConfig::scaling() const { return use_rslora ? alpha / std::sqrt(double(r)) : alpha / double(r); }

bool LoraConfig::targets_layer(int layer) const {
  return layers.empty() || std::find(layers.begin(), layers.end(), layer) != layers.end();
}

bool LoraConfig::targets_proj(Proj p) const {
  return std::find(targets.begin(), targets.end(), p) != targets.end();
}

std::vector<Proj> parse_targets(const std::vector<std::string>& names) {
  std::vector<Proj> out;
  for (const std::string& n : names) {
    if (n == "all-linear" || n == "all") return {model::kAllProjs.begin(), model::kAllProjs.end()};
    auto p = model::parse_proj(n);
    if (!p)
      throw Error(str("unknown LoRA target '", n, "'"))
          .hint(str("targets: ", model::proj_names(" "), " (or all-linear)"));
    if (std::find(out.begin(), out.end(), *p) == out.end()) out.push_back(*p);
  }
  if (out.empty())
    throw Error("no LoRA targets given")
        .hint(str("e.g. ", model::proj_name(Proj::q), ",", model::proj_name(Proj::k), ",",
                  model::proj_name(Proj::v), ",", model::proj_name(Proj::o)));
  std::sort(out.begin(), out.end());
  return out;
}

// ---- LoraLinear -----------------------------------------------------------------------------------

LoraLinear::LoraLinear(std::shared_ptr<model::Projection> base, at::Tensor a_, at::Tensor b_, double scaling_,
                       double dropout_)
    : a(std::move(a_)), b(std::move(b_)), scaling(scaling_), dropout(dropout_), base_(std::move(base)) {
  HS_CHECK(base_, "LoRA needs a base projection");
  HS_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == base_->in_features() &&
               b.size(0) == base_->out_features() && a.size(0) == b.size(1),
           "LoRA shapes do not fit the base projection");
  dense_ = base_->dense();
}

at::Tensor LoraLinear::forward(const at::Tensor& x, bool training) const {
  if (dense_)
    return model::ops::lora_linear(x, dense_->weight, dense_->bias, a, b, scaling, dropout, training);
  if (const model::Projection* packed = base_->packed_base()) {  // QLoRA: the fast path unpacks the base
    const model::ops::LoraProj p{at::Tensor(), packed->packed_bias(), a, b, scaling, dropout, packed};
    if (model::ops::lora_proj_has_fast_path(x, p, training)) return model::ops::lora_proj_fast(x, p);
  }
  // PEFT's order: the base result plus the delta in the promoted dtype, cast back to the base result's dtype
  // (a bf16 base under a float32 adapter stays bf16).
  const at::Tensor base = base_->forward(x, training);
  at::Tensor sum = base + model::ops::lora_delta(x, a, b, scaling, dropout, training);
  return sum.scalar_type() == base.scalar_type() ? sum : sum.to(base.scalar_type());
}

at::Tensor merge_weight(const at::Tensor& w, const at::Tensor& a, const at::Tensor& b, double scaling) {
  at::NoGradGuard no_grad;
  at::Tensor delta = at::matmul(b.to(w.device(), at::kFloat), a.to(w.device(), at::kFloat)) * scaling;
  return (w.to(at::kFloat) + delta).to(w.scalar_type());
}

// ---- adapter_config.json ------------------------------------------------------------------------

namespace {

struct Matcher {
  // PEFT semantics on module keys relative to the causal-LM ("model.layers.0.self_attn.q_proj").
  json targets, exclude;
  std::vector<int> layers;
  bool matches(const std::string& key, int layer) const {
    auto match_one = [&](const json& spec) {
      if (spec.is_string()) {
        std::string s = spec.get<std::string>();
        if (s == "all-linear") return true;
        return std::regex_match(key, std::regex(s));
      }
      for (const json& t : spec) {
        std::string n = t.get<std::string>();
        if (key == n ||
            (key.size() > n.size() && key.compare(key.size() - n.size() - 1, n.size() + 1, "." + n) == 0))
          return true;
      }
      return false;
    };
    if (!exclude.is_null() && match_one(exclude)) return false;
    if (!match_one(targets)) return false;
    return layers.empty() || std::find(layers.begin(), layers.end(), layer) != layers.end();
  }
};

template <typename T>
T get_or(const json& j, const char* key, T def) {
  return j.contains(key) && !j[key].is_null() ? j[key].get<T>() : def;
}

}  // namespace

LoraConfig Adapter::read_config(const std::string& dir, int num_layers) {
  std::string path = (fs::path(dir) / "adapter_config.json").string();
  if (!io::is_directory(dir))
    throw Error("adapter folder not found").at(dir).hint("pass the folder PEFT saved");
  if (!io::exists(path))
    throw Error("adapter_config.json not found")
        .at(dir)
        .hint("pass the folder written by PeftModel.save_pretrained");
  json j = io::read_json(path, {"not valid JSON", "the adapter folder is damaged; save the adapter again"});
  auto bad = [&](const std::string& key, const std::string& what) {
    return Error(what).at(path + ": " + key);
  };
  try {
    std::string type = get_or<std::string>(j, "peft_type", "");
    if (type != "LORA")
      throw bad("peft_type", str("adapter type '", type, "' is not supported"))
          .hint("only LoRA adapters are");
    std::string task = get_or<std::string>(j, "task_type", "CAUSAL_LM");
    if (task != "CAUSAL_LM") log::warn(path, ": task_type is ", task, ", expected CAUSAL_LM");
    LoraConfig c;
    c.r = get_or<int64_t>(j, "r", 8);
    if (c.r <= 0) throw bad("r", str("must be positive, got ", c.r));
    c.alpha = get_or<double>(j, "lora_alpha", 8);
    c.dropout = get_or<double>(j, "lora_dropout", 0.0);
    c.use_rslora = get_or<bool>(j, "use_rslora", false);
    c.base_model_name_or_path = get_or<std::string>(j, "base_model_name_or_path", "");
    if (get_or<bool>(j, "use_dora", false)) throw bad("use_dora", "DoRA adapters are not supported");
    if (get_or<bool>(j, "fan_in_fan_out", false))
      throw bad("fan_in_fan_out", "fan_in_fan_out=true is not supported");
    if (get_or<bool>(j, "lora_bias", false)) throw bad("lora_bias", "lora_bias=true is not supported");
    if (get_or<std::string>(j, "bias", "none") != "none")
      throw bad("bias", str("bias='", j["bias"].get<std::string>(), "' is not supported (only \"none\")"));
    for (const char* k :
         {"modules_to_save", "target_parameters", "trainable_token_indices", "layer_replication"})
      if (j.contains(k) && !j[k].is_null() && !j[k].empty())
        throw bad(k, str("'", k, "' = ", j[k].dump(), " is not supported"))
            .hint("only plain LoRA on the attention/MLP projections is");
    for (const char* k : {"rank_pattern", "alpha_pattern"})
      if (j.contains(k) && !j[k].is_null() && !j[k].empty())
        throw bad(k, "per-module rank/alpha patterns are not supported");
    if (j.contains("layers_pattern") && !j["layers_pattern"].is_null()) {
      const json& lp = j["layers_pattern"];
      bool ok = (lp.is_string() && (lp == "layers" || lp == "")) ||
                (lp.is_array() && (lp.empty() || (lp.size() == 1 && lp[0] == "layers")));
      if (!ok) throw bad("layers_pattern", str(lp.dump(), " is not supported"));
    }
    Matcher m;
    if (!j.contains("target_modules") || j["target_modules"].is_null())
      throw bad("target_modules", "missing").hint("the adapter must name its target modules");
    m.targets = j["target_modules"];
    if (!m.targets.is_string() && !m.targets.is_array())
      throw bad("target_modules", "expected a list or a string");
    m.exclude = j.contains("exclude_modules") ? j["exclude_modules"] : json();
    // A string is a regular expression (PEFT: re.fullmatch); a bad one is the file's error, not ours.
    for (const char* key : {"target_modules", "exclude_modules"}) {
      const json& spec = key[0] == 't' ? m.targets : m.exclude;
      if (!spec.is_string() || spec == "all-linear") continue;
      try {
        std::regex check(spec.get<std::string>());
      } catch (const std::regex_error& e) {
        throw bad(key,
                  str("'", spec.get<std::string>(), "' is not a valid regular expression (", e.what(), ")"))
            .hint(str("a string is matched as a regular expression against module names, e.g. \".*\\.(",
                      model::proj_name(Proj::q), "|", model::proj_name(Proj::v), ")\"; or give a list: [\"",
                      model::proj_name(Proj::q), "\", \"", model::proj_name(Proj::v), "\"]"));
      }
    }
    if (m.exclude.is_array())
      for (const json& t : m.exclude)
        if (!t.is_string()) throw bad("exclude_modules", "expected a list of strings");
    if (m.targets.is_array())
      for (const json& t : m.targets)
        if (!t.is_string()) throw bad("target_modules", "expected a list of strings");
    if (j.contains("layers_to_transform") && !j["layers_to_transform"].is_null()) {
      const json& l = j["layers_to_transform"];
      if (l.is_number_integer())
        m.layers = {l.get<int>()};
      else
        for (const json& x : l) m.layers.push_back(x.get<int>());
    }
    c.layers = m.layers;
    // Which projections are targeted: the same set in every targeted layer (checked).
    std::set<Proj> projs;
    for (int i = 0; i < num_layers; ++i)
      for (Proj p : model::kAllProjs)
        if (m.matches(model::names::module(i, p), i)) projs.insert(p);
    for (int i = 0; i < num_layers; ++i) {
      if (!c.targets_layer(i)) continue;
      for (Proj p : projs)
        if (!m.matches(model::names::module(i, p), i))
          throw bad("target_modules",
                    str("targets ", model::proj_name(p), " in some layers but not in layer ", i))
              .hint("per-layer target sets are not supported");
    }
    if (projs.empty())
      throw bad("target_modules", str(j["target_modules"].dump(), " matches none of the model's projections"))
          .hint("supported targets: " + model::proj_names(" "));
    if (m.targets.is_array())
      for (const json& t : m.targets) {
        std::string n = t.get<std::string>();
        bool any = false;
        for (Proj p : model::kAllProjs) {
          const std::string key = model::names::module(0, p);
          any = any || key == n || key.ends_with("." + n);
        }
        if (!any)
          throw bad("target_modules", str("target '", n, "' is not a supported projection"))
              .hint("supported targets: " + model::proj_names(" "));
      }
    c.targets.assign(projs.begin(), projs.end());
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw Error(str("unexpected value type: ", e.what())).at(path);
  }
}

std::string adapter_config_json(const LoraConfig& c, bool inference_mode) {
  nlohmann::ordered_json j;
  j["alpha_pattern"] = json::object();
  j["auto_mapping"] = nullptr;
  j["base_model_name_or_path"] = c.base_model_name_or_path.empty() ? json() : json(c.base_model_name_or_path);
  j["bias"] = "none";
  j["fan_in_fan_out"] = false;
  j["inference_mode"] = inference_mode;
  j["init_lora_weights"] = true;
  j["layer_replication"] = nullptr;
  j["layers_pattern"] = nullptr;
  j["layers_to_transform"] = c.layers.empty() ? json() : json(c.layers);
  j["loftq_config"] = json::object();
  // PEFT writes integers for integral alphas (lora_alpha: int in LoraConfig).
  if (std::floor(c.alpha) == c.alpha && std::abs(c.alpha) < 1e15)
    j["lora_alpha"] = int64_t(c.alpha);
  else
    j["lora_alpha"] = c.alpha;
  j["lora_bias"] = false;
  j["lora_dropout"] = c.dropout;
  j["megatron_config"] = nullptr;
  j["megatron_core"] = "megatron.core";
  j["modules_to_save"] = nullptr;
  j["peft_type"] = "LORA";
  j["r"] = c.r;
  j["rank_pattern"] = json::object();
  j["revision"] = nullptr;
  std::vector<std::string> targets;
  for (Proj p : c.targets) targets.push_back(model::proj_name(p));
  j["target_modules"] = targets;
  j["task_type"] = "CAUSAL_LM";
  j["use_dora"] = false;
  j["use_rslora"] = c.use_rslora;
  return j.dump(2) + "\n";
}

// ---- Adapter --------------------------------------------------------------------------------------

namespace {

// torch.nn.init.kaiming_uniform_(t, a=sqrt(5)) on a [fan_out, fan_in] weight: U(-bound, bound) with
// bound = sqrt(3) * gain / sqrt(fan_in), gain = sqrt(2 / (1 + a^2)); computed in double as torch does.
void kaiming_uniform_a_sqrt5(at::Tensor& t, at::Generator& gen) {
  const double a = std::sqrt(5.0);
  const double gain = std::sqrt(2.0 / (1 + a * a));
  const double std_ = gain / std::sqrt(double(t.size(1)));
  const double bound = std::sqrt(3.0) * std_;
  t.uniform_(-bound, bound, gen);
}

}  // namespace

Adapter Adapter::create(model::Model& m, const LoraConfig& config, uint64_t seed, at::ScalarType dtype) {
  HS_CHECK(config.r > 0, "r must be positive");
  Adapter ad;
  ad.model_ = &m;
  ad.config_ = config;
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const double scaling = config.scaling();
  for (int i = 0; i < m.num_layers(); ++i) {
    if (!config.targets_layer(i)) continue;
    for (Proj p : model::kAllProjs) {
      if (!config.targets_proj(p)) continue;
      auto& slot = m.layer(i).proj[size_t(p)];
      const int64_t in = slot->in_features(), out = slot->out_features();
      // PEFT's draws: nn.Linear(in, r) init, nn.Linear(r, out) init, then kaiming on A again; B = 0.
      at::Tensor a = at::empty({config.r, in}, at::kFloat);
      at::Tensor b = at::empty({out, config.r}, at::kFloat);
      kaiming_uniform_a_sqrt5(a, gen);
      kaiming_uniform_a_sqrt5(b, gen);
      kaiming_uniform_a_sqrt5(a, gen);
      b.zero_();
      a = a.to(m.options().device, dtype).requires_grad_(true);
      b = b.to(m.options().device, dtype).requires_grad_(true);
      auto lora = std::make_shared<LoraLinear>(slot, a, b, scaling, config.dropout);
      slot = lora;
      ad.entries_.push_back({i, p, lora});
    }
  }
  return ad;
}

AdapterFile AdapterFile::open(const std::string& dir, const io::HfConfig& hf) {
  AdapterFile f;
  f.config_ = Adapter::read_config(dir, int(hf.num_hidden_layers));
  f.ck_ = io::Checkpoint::open(dir, "adapter_model");
  const LoraConfig& config = f.config_;
  std::set<std::string> expected;
  std::vector<std::string> missing;
  for (int i = 0; i < int(hf.num_hidden_layers); ++i) {
    if (!config.targets_layer(i)) continue;
    for (Proj p : config.targets) {
      const std::string na = model::names::lora_a(i, p), nb = model::names::lora_b(i, p);
      expected.insert(na);
      expected.insert(nb);
      Pair pair{f.ck_.find(na), f.ck_.find(nb)};
      if (!pair.a) missing.push_back(na);
      if (!pair.b) missing.push_back(nb);
      if (!pair.a || !pair.b) continue;
      auto [out, in] = model::proj_shape(hf, p);
      for (auto [t, shape] : {std::pair{pair.a, std::vector<int64_t>{config.r, in}},
                              std::pair{pair.b, std::vector<int64_t>{out, config.r}}}) {
        if (t->shape != shape)
          throw Error(str("tensor '", t->name, "' has shape [", t->shape.empty() ? 0 : t->shape[0], ", ",
                          t->shape.size() > 1 ? t->shape[1] : 0, "], expected [", shape[0], ", ", shape[1],
                          "]"))
              .at(f.ck_.source())
              .hint("the adapter was trained for a different base model or rank");
        if (t->dtype != io::DType::F32 && t->dtype != io::DType::BF16 && t->dtype != io::DType::F16 &&
            t->dtype != io::DType::F64)
          throw Error(str("tensor '", t->name, "' has dtype ", io::dtype_name(t->dtype))).at(f.ck_.source());
      }
      f.pairs_[{i, int(p)}] = pair;
    }
  }
  if (!missing.empty())
    throw Error(str(missing.size(), " adapter tensor(s) missing, e.g. '", missing.front(), "'"))
        .at(f.ck_.source())
        .hint("adapter_config.json's target_modules and the saved tensors disagree");
  std::vector<std::string> unexpected;
  for (const std::string& n : f.ck_.names())
    if (!expected.count(n)) unexpected.push_back(n);
  if (!unexpected.empty())
    throw Error(str(unexpected.size(), " unexpected adapter tensor(s), e.g. '", unexpected.front(), "'"))
        .at(f.ck_.source())
        .hint("only lora_A/lora_B of the targeted projections are supported (no modules_to_save, no DoRA)");
  return f;
}

const AdapterFile::Pair* AdapterFile::find(int layer, Proj proj) const {
  auto it = pairs_.find({layer, int(proj)});
  return it == pairs_.end() ? nullptr : &it->second;
}

Adapter Adapter::load(model::Model& m, const std::string& dir, at::ScalarType dtype) {
  AdapterFile file = AdapterFile::open(dir, m.config());
  Adapter ad;
  ad.model_ = &m;
  ad.config_ = file.config();
  for (int i = 0; i < m.num_layers(); ++i)
    for (Proj p : model::kAllProjs) {
      const AdapterFile::Pair* pair = file.find(i, p);
      if (!pair) continue;
      auto& slot = m.layer(i).proj[size_t(p)];
      at::Tensor a = model::load_tensor(*pair->a, dtype, m.options().device).requires_grad_(true);
      at::Tensor b = model::load_tensor(*pair->b, dtype, m.options().device).requires_grad_(true);
      auto lora = std::make_shared<LoraLinear>(slot, a, b, ad.config_.scaling(), ad.config_.dropout);
      slot = lora;
      ad.entries_.push_back({i, p, lora});
    }
  return ad;
}

std::vector<model::NamedTensor> Adapter::trainable() const {
  std::vector<model::NamedTensor> out;
  for (const Entry& e : entries_) {
    out.push_back({model::names::lora_a(e.layer, e.proj), e.module->a});
    out.push_back({model::names::lora_b(e.layer, e.proj), e.module->b});
  }
  return out;
}

int64_t Adapter::num_parameters() const {
  int64_t n = 0;
  for (const auto& t : trainable()) n += t.tensor.numel();
  return n;
}

void Adapter::save(const std::string& dir) const {
  io::make_dirs(dir);
  std::vector<model::HostTensor> host;
  for (const auto& t : trainable()) host.push_back(model::to_host(t.name, t.tensor));
  std::vector<io::TensorRef> refs;
  for (const auto& h : host) refs.push_back(h.ref());
  io::write_safetensors((fs::path(dir) / "adapter_model.safetensors").string(), refs, {{"format", "pt"}});
  io::write_file_atomic((fs::path(dir) / "adapter_config.json").string(), adapter_config_json(config_));
}

void Adapter::merge_into_model() {
  at::NoGradGuard no_grad;
  for (Entry& e : entries_) {
    auto& slot = model_->layer(e.layer).proj[size_t(e.proj)];
    const model::DenseLinear* dense = e.module->base()->dense();
    if (!dense)
      throw Error(str(model::names::module(e.layer, e.proj), ": only dense base weights can be merged"));
    at::Tensor w = merge_weight(dense->weight, e.module->a, e.module->b, e.module->scaling);
    slot = std::make_shared<model::DenseLinear>(w, dense->bias);
  }
  entries_.clear();
}

model::Model load_for_inference(const std::string& model_dir, const std::string& adapter_dir,
                                const model::LoadOptions& options, bool merge) {
  model::Model m = model::Model::load(model_dir, options);
  if (!adapter_dir.empty()) {
    Adapter adapter = Adapter::load(m, adapter_dir,
                                    // float32 adapters on a bf16/fp32 base, as PEFT keeps them
                                    options.dtype == at::kDouble && !merge ? at::kDouble : at::kFloat);
    for (const auto& t : adapter.trainable()) t.tensor.requires_grad_(false);
    if (merge) adapter.merge_into_model();
    log::info("adapter ", adapter_dir, ": r=", adapter.config().r, ", alpha=", adapter.config().alpha,
              merge ? ", merged" : ", unmerged");
  }
  return m;
}

}  // namespace hs::lora
