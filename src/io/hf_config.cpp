// config.json -> HfConfig. The shape keys are required (a config without them is not a model config);
// the rest take transformers' per-architecture defaults. Values are type-checked and range-checked here
// so the model code can trust them.
#include "io/hf_config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/file.h"
#include "io/json.h"

namespace hs::io {
using json = nlohmann::json;

namespace {

struct Reader {
  const json& j;
  const std::string& source;

  Error bad(const std::string& key, const std::string& what) const {
    return std::move(Error(what).at(str(source, ": ", key)));
  }
  bool has(const std::string& key) const { return j.contains(key) && !j[key].is_null(); }
  int64_t integer(const std::string& key, std::optional<int64_t> def, int64_t min = 1) const {
    if (!has(key)) {
      if (!def)
        throw bad(key, "required key is missing").hint("is this a Hugging Face causal-LM config.json?");
      return *def;
    }
    const json& v = j[key];
    if (!v.is_number_integer() && !(v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()))
      throw bad(key, str("expected an integer, got ", v.dump()));
    int64_t x = v.is_number_integer() ? v.get<int64_t>() : int64_t(v.get<double>());
    if (x < min) throw bad(key, str("must be >= ", min, ", got ", x));
    return x;
  }
  double real(const json& obj, const std::string& key, std::optional<double> def,
              const std::string& path) const {
    if (!obj.contains(key) || obj[key].is_null()) {
      if (!def) throw bad(path, "required key is missing");
      return *def;
    }
    if (!obj[key].is_number()) throw bad(path, str("expected a number, got ", obj[key].dump()));
    return obj[key].get<double>();
  }
  bool boolean(const std::string& key, bool def) const {
    if (!has(key)) return def;
    if (!j[key].is_boolean()) throw bad(key, str("expected true or false, got ", j[key].dump()));
    return j[key].get<bool>();
  }
  std::vector<int64_t> ids(const std::string& key, std::vector<int64_t> def) const {
    if (!j.contains(key)) return def;
    const json& v = j[key];
    if (v.is_null()) return {};
    if (v.is_number_integer()) return {v.get<int64_t>()};
    if (v.is_array()) {
      std::vector<int64_t> out;
      for (const json& x : v) {
        if (!x.is_number_integer()) throw bad(key, str("expected token ids, got ", v.dump()));
        out.push_back(x.get<int64_t>());
      }
      return out;
    }
    throw bad(key, str("expected an id or a list of ids, got ", v.dump()));
  }
};

void read_rope(const Reader& r, HfConfig& c) {
  const json& j = r.j;
  // transformers 5 writes `rope_parameters` {rope_type, rope_theta, ...}; older files `rope_theta` at the top
  // and `rope_scaling` {type|rope_type, factor, ...} or null.
  const json* params = nullptr;
  std::string key;
  if (r.has("rope_parameters")) {
    params = &j["rope_parameters"];
    key = "rope_parameters";
  } else if (r.has("rope_scaling")) {
    params = &j["rope_scaling"];
    key = "rope_scaling";
  }
  c.rope_theta = r.real(j, "rope_theta", 10000.0, "rope_theta");
  if (r.has("partial_rotary_factor") &&
      r.real(j, "partial_rotary_factor", 1.0, "partial_rotary_factor") != 1.0)
    throw r.bad("partial_rotary_factor",
                str("partial rotary embeddings are not supported (", j["partial_rotary_factor"].dump(), ")"));
  if (!params) return;
  if (!params->is_object()) throw r.bad(key, str("expected an object or null, got ", params->dump()));
  if (params->contains("full_attention") || params->contains("sliding_attention"))
    throw r.bad(key, "per-layer-type rope parameters are not supported");
  if (params->contains("rope_theta") && !(*params)["rope_theta"].is_null())
    c.rope_theta = r.real(*params, "rope_theta", std::nullopt, key + ".rope_theta");
  if (params->contains("partial_rotary_factor") &&
      r.real(*params, "partial_rotary_factor", 1.0, key + ".partial_rotary_factor") != 1.0)
    throw r.bad(key + ".partial_rotary_factor", "partial rotary embeddings are not supported");
  std::string type = "default";
  for (const char* k : {"rope_type", "type"})
    if (params->contains(k) && !(*params)[k].is_null()) {
      if (!(*params)[k].is_string()) throw r.bad(key + "." + k, "expected a string");
      type = (*params)[k].get<std::string>();
      break;
    }
  if (type == "default") {
    c.rope.type = RopeType::standard;
  } else if (type == "linear") {
    c.rope.type = RopeType::linear;
    c.rope.factor = r.real(*params, "factor", std::nullopt, key + ".factor");
    if (!(c.rope.factor >= 1.0)) throw r.bad(key + ".factor", str("must be >= 1, got ", c.rope.factor));
  } else if (type == "llama3") {
    c.rope.type = RopeType::llama3;
    c.rope.factor = r.real(*params, "factor", std::nullopt, key + ".factor");
    c.rope.low_freq_factor = r.real(*params, "low_freq_factor", std::nullopt, key + ".low_freq_factor");
    c.rope.high_freq_factor = r.real(*params, "high_freq_factor", std::nullopt, key + ".high_freq_factor");
    c.rope.original_max_position_embeddings =
        int64_t(r.real(*params, "original_max_position_embeddings", double(c.max_position_embeddings),
                       key + ".original_max_position_embeddings"));
    if (!(c.rope.factor >= 1.0)) throw r.bad(key + ".factor", str("must be >= 1, got ", c.rope.factor));
    if (!(c.rope.high_freq_factor > c.rope.low_freq_factor) || !(c.rope.low_freq_factor > 0))
      throw r.bad(key, "llama3 rope needs high_freq_factor > low_freq_factor > 0");
    if (c.rope.original_max_position_embeddings <= 0)
      throw r.bad(key + ".original_max_position_embeddings", "must be positive");
  } else {
    throw r.bad(key + ".rope_type", str("rope type '", type, "' is not supported"))
        .hint("supported: default, linear, llama3 (yarn, dynamic and longrope are not implemented)");
  }
}

// quantization_config: bitsandbytes NF4 with double quantization, or an error naming the key.
void read_quantization(const Reader& r, HfConfig& c) {
  if (!r.has("quantization_config")) return;
  const json& q = r.j["quantization_config"];
  const std::string key = "quantization_config";
  const char* supported =
      "supported: bitsandbytes 4-bit NF4 with double quantization (quant_method \"bitsandbytes\", "
      "load_in_4bit true, bnb_4bit_quant_type \"nf4\", bnb_4bit_use_double_quant true), as transformers "
      "saves BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=\"nf4\", "
      "bnb_4bit_use_double_quant=True); or dequantize the model to bf16 first";
  if (!q.is_object()) throw r.bad(key, str("expected an object, got ", q.dump())).hint(supported);
  auto field = [&](const char* k) -> const json* {
    for (std::string name : {std::string(k), "_" + std::string(k)})
      if (q.contains(name) && !q[name].is_null()) return &q[name];
    return nullptr;
  };
  auto flag = [&](const char* k) {
    const json* v = field(k);
    if (v && !v->is_boolean()) throw r.bad(key + "." + k, str("expected true or false, got ", v->dump()));
    return v && v->get<bool>();
  };
  auto text = [&](const char* k) -> std::string {
    const json* v = field(k);
    if (!v) return "";
    if (!v->is_string()) throw r.bad(key + "." + k, str("expected a string, got ", v->dump()));
    return v->get<std::string>();
  };
  const std::string method = text("quant_method");
  if (method != "bitsandbytes")
    throw r
        .bad(key + ".quant_method",
             str("quantization method '", method.empty() ? std::string("(missing)") : method,
                 "' is not supported"))
        .hint(supported);
  if (flag("load_in_8bit"))
    throw r.bad(key + ".load_in_8bit", "bitsandbytes 8-bit (LLM.int8) weights are not supported")
        .hint(supported);
  if (!flag("load_in_4bit"))
    throw r.bad(key + ".load_in_4bit", "expected true (only 4-bit bitsandbytes weights are supported)")
        .hint(supported);
  const std::string type = text("bnb_4bit_quant_type");
  if (type != "nf4")
    throw r
        .bad(
            key + ".bnb_4bit_quant_type",
            str("4-bit type '", type.empty() ? std::string("fp4 (the default)") : type, "' is not supported"))
        .hint(supported);
  if (!flag("bnb_4bit_use_double_quant"))
    throw r
        .bad(key + ".bnb_4bit_use_double_quant",
             "NF4 without double quantization is not supported (expected true)")
        .hint(supported);
  const std::string storage = text("bnb_4bit_quant_storage");
  if (!storage.empty() && storage != "uint8")
    throw r.bad(key + ".bnb_4bit_quant_storage", str("storage '", storage, "' is not supported (only uint8)"))
        .hint(supported);
  std::string compute = text("bnb_4bit_compute_dtype");
  if (compute.rfind("torch.", 0) == 0) compute = compute.substr(6);
  if (compute.empty()) compute = "float32";  // transformers' default
  if (compute != "bfloat16" && compute != "float16" && compute != "float32")
    throw r.bad(key + ".bnb_4bit_compute_dtype", str("compute dtype '", compute, "' is not supported"))
        .hint("supported: bfloat16, float16, float32");
  c.quantization.compute_dtype = compute;
  if (const json* skip = field("llm_int8_skip_modules")) {
    if (!skip->is_array())
      throw r.bad(key + ".llm_int8_skip_modules", str("expected a list of module names, got ", skip->dump()));
    // lm_head stays unquantized anyway; the others name modules of multimodal models that a causal LM
    // of the Llama family does not have (Unsloth's text checkpoints list them). A decoder module left
    // unquantized (Unsloth's "dynamic" quants) is not supported.
    static const std::vector<std::string> harmless = {
        "lm_head", "multi_modal_projector", "merger", "modality_projection", "vision_tower", "visual"};
    for (const json& m : *skip) {
      if (!m.is_string())
        throw r.bad(key + ".llm_int8_skip_modules", str("expected module names, got ", m.dump()));
      const std::string name = m.get<std::string>();
      if (std::find(harmless.begin(), harmless.end(), name) == harmless.end())
        throw r
            .bad(key + ".llm_int8_skip_modules",
                 str("module '", name,
                     "' is kept unquantized; only lm_head may be (decoder layers with "
                     "some projections left in bf16 are not supported)"))
            .hint(
                "use a checkpoint quantized with the default skip list (lm_head), or the bf16 model "
                "with --quant nf4");
      c.quantization.skip_modules.push_back(name);
    }
  }
  c.quantization.nf4 = true;
}

}  // namespace

void HfConfig::check_sequence_length(int64_t length, const std::string& where) const {
  if (max_position_embeddings > 0 && length > max_position_embeddings)
    throw Error(str("sequence of ", length, " tokens exceeds the model's max_position_embeddings (",
                    max_position_embeddings, ")"))
        .at(where)
        .hint(str("the model was not trained on positions past ", max_position_embeddings,
                  "; use at most that many tokens (e.g. `hsloth prep --max-len ", max_position_embeddings,
                  "`, a shorter prompt or a smaller --max-new)"));
  if (sliding_window > 0 && length > sliding_window)
    throw Error(str("sequence of ", length, " tokens exceeds the model's sliding window (", sliding_window,
                    "); sliding-window attention is not implemented"))
        .at(where)
        .hint(str("use sequences of at most ", sliding_window, " tokens (e.g. a lower data max length)"));
}

HfConfig parse_hf_config(std::string_view text, const std::string& source) {
  json j = parse_json(text, source,
                      {"not valid JSON", "the file is truncated or not JSON; download config.json again"});
  if (!j.is_object()) throw Error("config.json is not a JSON object").at(source);
  Reader r{j, source};
  HfConfig c;
  c.source = source;
  c.text = std::string(text);
  if (!r.has("model_type") || !j["model_type"].is_string())
    throw r.bad("model_type", "missing").hint("supported model types: llama, mistral, qwen2, qwen3");
  c.model_type = j["model_type"].get<std::string>();
  const std::string& mt = c.model_type;
  if (mt != "llama" && mt != "mistral" && mt != "qwen2" && mt != "qwen3")
    throw r.bad("model_type", str("model type '", mt, "' is not supported"))
        .hint("supported model types: llama, mistral, qwen2, qwen3 (TinyLlama and Llama 2/3 are 'llama')");

  c.hidden_size = r.integer("hidden_size", std::nullopt);
  c.intermediate_size = r.integer("intermediate_size", std::nullopt);
  c.num_hidden_layers = r.integer("num_hidden_layers", std::nullopt);
  c.num_attention_heads = r.integer("num_attention_heads", std::nullopt);
  c.vocab_size = r.integer("vocab_size", std::nullopt);
  c.num_key_value_heads = r.integer("num_key_value_heads", c.num_attention_heads);
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    throw r.bad("num_key_value_heads",
                str(c.num_key_value_heads, " does not divide num_attention_heads ", c.num_attention_heads));
  if (mt == "qwen3") {
    c.head_dim = r.integer("head_dim", 128);
  } else {
    if (!r.has("head_dim") && c.hidden_size % c.num_attention_heads != 0)
      throw r.bad("num_attention_heads",
                  str("hidden_size ", c.hidden_size, " is not a multiple of ", c.num_attention_heads));
    c.head_dim = r.integer("head_dim", c.hidden_size / c.num_attention_heads);
  }
  if (c.head_dim % 2 != 0) throw r.bad("head_dim", str("must be even for RoPE, got ", c.head_dim));
  int64_t default_max = mt == "llama" ? 2048 : mt == "mistral" ? 4096 * 32 : 32768;
  c.max_position_embeddings = r.integer("max_position_embeddings", default_max);
  c.rms_norm_eps = r.real(j, "rms_norm_eps", 1e-6, "rms_norm_eps");
  if (!(c.rms_norm_eps > 0)) throw r.bad("rms_norm_eps", "must be positive");
  read_rope(r, c);
  if (!(c.rope_theta > 0)) throw r.bad("rope_theta", "must be positive");

  if (r.has("hidden_act")) {
    if (!j["hidden_act"].is_string()) throw r.bad("hidden_act", "expected a string");
    std::string act = j["hidden_act"].get<std::string>();
    if (act != "silu" && act != "swish")
      throw r.bad("hidden_act", str("activation '", act, "' is not supported")).hint("only silu (SwiGLU) is");
  }
  c.tie_word_embeddings_given = r.has("tie_word_embeddings");
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", false);

  if (mt == "qwen2") {
    c.qkv_bias = true;
  } else if (mt == "llama" || mt == "qwen3") {
    c.qkv_bias = c.o_bias = r.boolean("attention_bias", false);
  }
  if (mt == "llama") c.mlp_bias = r.boolean("mlp_bias", false);
  if (mt == "qwen3") c.qk_norm = true;

  if (mt == "mistral") {
    c.sliding_window = j.contains("sliding_window")
                           ? (j["sliding_window"].is_null() ? 0 : r.integer("sliding_window", 0))
                           : 4096;
  } else if (mt == "qwen2" || mt == "qwen3") {
    if (r.boolean("use_sliding_window", false)) c.sliding_window = r.integer("sliding_window", 4096);
  }

  std::vector<int64_t> def_bos, def_eos;
  if (mt == "llama" || mt == "mistral") def_bos = {1}, def_eos = {2};
  c.bos_token_ids = r.ids("bos_token_id", def_bos);
  c.eos_token_ids = r.ids("eos_token_id", def_eos);
  if (r.has("pad_token_id")) {
    auto p = r.ids("pad_token_id", {});
    if (p.size() == 1) c.pad_token_id = p[0];
  }
  for (const char* k : {"torch_dtype", "dtype"})
    if (r.has(k) && j[k].is_string()) c.torch_dtype = j[k].get<std::string>();
  read_quantization(r, c);
  return c;
}

HfConfig load_hf_config(const std::string& path) {
  std::string file = path;
  if (is_directory(path)) file = (std::filesystem::path(path) / "config.json").string();
  if (!exists(file))
    throw Error("config.json not found").at(file).hint("pass a Hugging Face model folder (with config.json)");
  return parse_hf_config(read_file(file), file);
}

}  // namespace hs::io
