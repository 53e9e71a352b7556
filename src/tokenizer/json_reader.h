// JSON access that knows where it is. Every JsonRef carries the file name and the key path that led to
// it, so a loader error reads "tokenizer.json: model.merges[12]: expected a string, got number" and
// never just "type_error.302". Reading and parsing JSON files is io/json.h's (errors at FILE:LINE:COLUMN).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace hs::tokenizer {

// model.vocab and model.merges of a tokenizer.json, read as flat data while parsing (a DOM of 150k
// vocabulary entries and merges costs more than everything else together).
struct ModelData {
  struct Merge {
    std::string a, b;  // legacy "a b" strings keep the whole text in `a`, with legacy = true
    bool legacy = false;
  };
  std::vector<std::pair<std::string, int64_t>> vocab;  // in file order
  std::vector<Merge> merges;
  bool vocab_captured = false, merges_captured = false;
  std::string error, error_at;  // the first malformed entry (message, key path), if any
};

// Parses tokenizer.json text: the DOM of everything except model.vocab (an object) and model.merges (an
// array), which go to `data` and are left in the DOM as an empty object / array. Parse errors throw
// io/json's hs::Error at "<path>:<line>:<column>".
nlohmann::json parse_tokenizer_json(const std::string& path, const std::string& text, ModelData& data);

class JsonRef {
 public:
  JsonRef(const nlohmann::json& value, const std::string& file, std::string path)
      : v_(&value), file_(&file), path_(std::move(path)) {}

  const nlohmann::json& raw() const { return *v_; }
  const std::string& path() const { return path_; }
  std::string where() const { return path_.empty() ? *file_ : *file_ + ": " + path_; }

  bool is_null() const { return v_->is_null(); }
  bool is_object() const { return v_->is_object(); }
  bool is_array() const { return v_->is_array(); }
  bool is_string() const { return v_->is_string(); }
  // Present and not null.
  bool has(const char* key) const;
  // Required member / element: a missing one is an error naming the key.
  JsonRef operator[](const char* key) const;
  JsonRef at(size_t index) const;
  size_t size() const;  // of an array or object (error for anything else)

  std::string str() const;
  int64_t integer() const;
  bool boolean() const;
  double number() const;
  // Optional members: missing or null gives the default.
  std::string str_or(const char* key, const std::string& def) const;
  bool bool_or(const char* key, bool def) const;
  int64_t int_or(const char* key, int64_t def) const;
  std::optional<std::string> opt_str(const char* key) const;

  [[noreturn]] void fail(const std::string& what, const std::string& hint = "") const;
  static const char* type_name(const nlohmann::json& v);

 private:
  std::string child(const char* key) const { return path_.empty() ? key : path_ + "." + key; }
  const nlohmann::json* v_;
  const std::string* file_;
  std::string path_;
};

}  // namespace hs::tokenizer
