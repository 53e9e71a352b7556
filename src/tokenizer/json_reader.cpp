// JsonRef: typed access with key paths in every error (see json_reader.h).
#include "tokenizer/json_reader.h"

#include "core/error.h"
#include "io/file.h"

namespace hs::tokenizer {

nlohmann::json parse_json_file(const std::string& path) {
  std::string text = io::read_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    std::string what = e.what();
    // "[json.exception.parse_error.101] parse error at line 3, column 7: ..." -> keep the readable part.
    auto cut = what.find("] ");
    if (cut != std::string::npos) what = what.substr(cut + 2);
    throw Error(hs::str("cannot parse JSON (", text.size(), " bytes): ", what))
        .at(path)
        .hint("the file is truncated or not JSON; download it again (it must be the HF tokenizers format)");
  }
}

const char* JsonRef::type_name(const nlohmann::json& v) { return v.type_name(); }

void JsonRef::fail(const std::string& what, const std::string& hint) const {
  Error e(what);
  e.at(where());
  if (!hint.empty()) e.hint(hint);
  throw e;
}

bool JsonRef::has(const char* key) const {
  if (!v_->is_object()) return false;
  auto it = v_->find(key);
  return it != v_->end() && !it->is_null();
}

JsonRef JsonRef::operator[](const char* key) const {
  if (!v_->is_object()) fail(hs::str("expected an object with key '", key, "', got ", type_name(*v_)));
  auto it = v_->find(key);
  if (it == v_->end())
    fail(hs::str("missing key '", key, "'"), "the file does not follow the HF tokenizer.json format");
  return JsonRef(*it, *file_, child(key));
}

JsonRef JsonRef::at(size_t index) const {
  if (!v_->is_array()) fail(hs::str("expected an array, got ", type_name(*v_)));
  if (index >= v_->size()) fail(hs::str("index ", index, " out of range (size ", v_->size(), ")"));
  return JsonRef((*v_)[index], *file_, path_ + "[" + std::to_string(index) + "]");
}

size_t JsonRef::size() const {
  if (!v_->is_array() && !v_->is_object()) fail(hs::str("expected an array or object, got ", type_name(*v_)));
  return v_->size();
}

std::string JsonRef::str() const {
  if (!v_->is_string()) fail(hs::str("expected a string, got ", type_name(*v_)));
  return v_->get<std::string>();
}

int64_t JsonRef::integer() const {
  if (!v_->is_number_integer()) fail(hs::str("expected an integer, got ", type_name(*v_)));
  return v_->get<int64_t>();
}

bool JsonRef::boolean() const {
  if (!v_->is_boolean()) fail(hs::str("expected true or false, got ", type_name(*v_)));
  return v_->get<bool>();
}

double JsonRef::number() const {
  if (!v_->is_number()) fail(hs::str("expected a number, got ", type_name(*v_)));
  return v_->get<double>();
}

std::string JsonRef::str_or(const char* key, const std::string& def) const {
  return has(key) ? (*this)[key].str() : def;
}
bool JsonRef::bool_or(const char* key, bool def) const { return has(key) ? (*this)[key].boolean() : def; }
int64_t JsonRef::int_or(const char* key, int64_t def) const {
  return has(key) ? (*this)[key].integer() : def;
}
std::optional<std::string> JsonRef::opt_str(const char* key) const {
  if (!has(key)) return std::nullopt;
  return (*this)[key].str();
}

}  // namespace hs::tokenizer
