// Hugging Face `config.json` for the Llama family (llama, mistral, qwen2, qwen3), read into a plain
// struct with transformers' defaults for keys a file leaves out. Both rope layouts are read: the classic
// `rope_theta` + `rope_scaling` and transformers 5's `rope_parameters`. Anything the model code does not
// implement (another model_type, yarn/dynamic rope, an activation other than SiLU, partial rotary) is an
// hs::Error naming the key and its value, never a silently different model.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hs::io {

enum class RopeType { standard, linear, llama3 };  // "default" / "linear" / "llama3"

struct RopeScaling {
  RopeType type = RopeType::standard;
  double factor = 1.0;
  double low_freq_factor = 1.0, high_freq_factor = 4.0;  // llama3
  int64_t original_max_position_embeddings = 0;          // llama3
};

// config.json's `quantization_config`. The one pre-quantized format read is bitsandbytes' 4-bit NF4 with
// double quantization (transformers' BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
// bnb_4bit_use_double_quant=True), the `-bnb-4bit` checkpoints); anything else (fp4, 8-bit, no double
// quantization, GPTQ, AWQ, ...) is an hs::Error naming the key and what is supported.
struct QuantizationConfig {
  bool nf4 = false;                       // the folder holds bitsandbytes NF4 projection weights
  std::string compute_dtype;              // bnb_4bit_compute_dtype: "bfloat16" | "float16" | "float32"
  std::vector<std::string> skip_modules;  // llm_int8_skip_modules (lm_head and non-decoder modules only)
};

struct HfConfig {
  std::string model_type;  // llama | mistral | qwen2 | qwen3
  int64_t hidden_size = 0, intermediate_size = 0, num_hidden_layers = 0;
  int64_t num_attention_heads = 0, num_key_value_heads = 0, head_dim = 0;
  int64_t max_position_embeddings = 0, vocab_size = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope;
  bool tie_word_embeddings = false;
  bool tie_word_embeddings_given = false;  // the key was present (else a missing lm_head implies tying)
  bool qkv_bias = false;       // q/k/v projections have a bias (qwen2 always; llama/qwen3 attention_bias)
  bool o_bias = false;         // o_proj has a bias (llama/qwen3 attention_bias)
  bool mlp_bias = false;       // gate/up/down have a bias (llama mlp_bias)
  bool qk_norm = false;        // qwen3: per-head RMSNorm on q and k before RoPE
  int64_t sliding_window = 0;  // 0 = none; sequences longer than this are refused
  std::vector<int64_t> bos_token_ids, eos_token_ids;
  std::optional<int64_t> pad_token_id;
  std::string torch_dtype;  // "bfloat16", "float32", ... or "" when absent
  QuantizationConfig quantization;  // nf4 = false: a plain (unquantized) folder
  std::string source;       // the config.json path
  std::string text;         // the file as read (merge copies it)

  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }
  // Throws hs::Error when a sequence of `length` tokens is one the model cannot run as trained: past
  // max_position_embeddings, or past a sliding window (not implemented).
  void check_sequence_length(int64_t length, const std::string& where) const;
};

HfConfig parse_hf_config(std::string_view json_text, const std::string& source);
// `path`: a config.json file or the model folder holding it.
HfConfig load_hf_config(const std::string& path);

}  // namespace hs::io
