// HF folder side files (see hf_folder.h): config.json is rewritten only to set the weights' dtype (key
// order kept, through io/json), the other known files are copied byte for byte, each written atomically.
#include "io/hf_folder.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/file.h"
#include "io/json.h"

namespace hs::io {
namespace {
namespace fs = std::filesystem;

// Files of a model folder that describe the model or its tokenizer; copied as they are.
const char* const kSideFiles[] = {"generation_config.json",
                                  "tokenizer.json",
                                  "tokenizer_config.json",
                                  "special_tokens_map.json",
                                  "tokenizer.model",
                                  "vocab.json",
                                  "merges.txt",
                                  "added_tokens.json",
                                  "chat_template.jinja",
                                  "chat_template.json"};
}  // namespace

int write_hf_side_files(const std::string& base_dir, const std::string& out_dir, const std::string& dtype_name) {
  const std::string config_path = (fs::path(base_dir) / "config.json").string();
  std::string config_text = read_file(config_path);
  if (!dtype_name.empty()) {
    nlohmann::ordered_json j = parse_ordered_json(
        config_text, config_path,
        {"config.json is not valid JSON", "the base model's config.json is damaged; download it again"});
    for (const char* key : {"torch_dtype", "dtype"})
      if (j.contains(key)) j[key] = dtype_name;
    if (!j.contains("torch_dtype") && !j.contains("dtype")) j["torch_dtype"] = dtype_name;
    j.erase("quantization_config");  // the written weights are dense (merge from a 4-bit base dequantizes)
    config_text = j.dump(2) + "\n";
  }
  write_file_atomic((fs::path(out_dir) / "config.json").string(), config_text);
  int copied = 0;
  std::error_code ec;
  for (const char* f : kSideFiles) {
    fs::path src = fs::path(base_dir) / f;
    if (!fs::exists(src, ec)) continue;
    write_file_atomic((fs::path(out_dir) / f).string(), read_file(src.string()));
    ++copied;
  }
  return copied;
}

}  // namespace hs::io
