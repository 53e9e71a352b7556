// JsonRef: typed access with key paths in every error, and the tokenizer.json parse that captures
// model.vocab / model.merges while the rest becomes a DOM (see json_reader.h). Parse errors come from
// io/json, the project's one JSON reader with positions.
#include "tokenizer/json_reader.h"

#include "core/error.h"
#include "io/json.h"

namespace hs::tokenizer {

namespace {

// Forwards every SAX event to nlohmann's DOM builder, except those inside model.vocab and model.merges,
// which it collects into ModelData.
class TokenizerSax {
 public:
  using json = nlohmann::json;
  TokenizerSax(json& root, ModelData& data) : dom_(root, false), data_(data) {}

  bool null() { return value("null"); }
  bool boolean(bool v) { return capturing() ? value("a boolean") : dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) {
    if (mode_ == Mode::vocab && depth_ == 1) return vocab_id(v);
    return capturing() ? value("a number") : dom_.number_integer(v);
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (mode_ == Mode::vocab && depth_ == 1)
      return vocab_id(v > uint64_t(INT64_MAX) ? int64_t(-1) : int64_t(v));
    return capturing() ? value("a number") : dom_.number_unsigned(v);
  }
  bool number_float(json::number_float_t v, const json::string_t& s) {
    return capturing() ? value("a number") : dom_.number_float(v, s);
  }
  bool binary(json::binary_t& v) { return capturing() ? value("binary") : dom_.binary(v); }
  bool string(json::string_t& v) {
    if (mode_ == Mode::merges) {
      if (depth_ == 1) {
        data_.merges.push_back({std::move(v), {}, true});
        return true;
      }
      if (depth_ == 2) {
        pair_.push_back(std::move(v));
        return true;
      }
    }
    return capturing() ? value("a string") : dom_.string(v);
  }
  bool key(json::string_t& k) {
    if (mode_ == Mode::vocab && depth_ == 1) {
      key_ = std::move(k);
      return true;
    }
    if (capturing()) return true;
    if (!frames_.empty()) frames_.back() = k;
    return dom_.key(k);
  }
  bool start_object(std::size_t n) {
    if (capturing()) {
      ++depth_;
      return value("an object");
    }
    if (at({"model", "vocab"})) {
      mode_ = Mode::vocab;
      depth_ = 1;
      data_.vocab_captured = true;
      data_.vocab.reserve(1 << 16);
      return dom_.start_object(0) && dom_.end_object();
    }
    frames_.emplace_back();
    return dom_.start_object(n);
  }
  bool end_object() {
    if (capturing()) {
      if (--depth_ == 0) mode_ = Mode::none;
      return true;
    }
    frames_.pop_back();
    return dom_.end_object();
  }
  bool start_array(std::size_t n) {
    if (mode_ == Mode::merges && depth_ == 1) {
      ++depth_;
      pair_.clear();
      return true;
    }
    if (capturing()) {
      ++depth_;
      return value("an array");
    }
    if (at({"model", "merges"})) {
      mode_ = Mode::merges;
      depth_ = 1;
      data_.merges_captured = true;
      data_.merges.reserve(1 << 16);
      return dom_.start_array(0) && dom_.end_array();
    }
    frames_.emplace_back();  // arrays have no keys; a placeholder keeps the depth right
    return dom_.start_array(n);
  }
  bool end_array() {
    if (mode_ == Mode::merges && depth_ == 2) {
      --depth_;
      if (pair_.size() == 2) {
        data_.merges.push_back({std::move(pair_[0]), std::move(pair_[1]), false});
      } else {
        fail(hs::str("expected \"a b\" or [\"a\", \"b\"], got an array of ", pair_.size()));
        data_.merges.push_back({});
      }
      return true;
    }
    if (capturing()) {
      if (--depth_ == 0) mode_ = Mode::none;
      return true;
    }
    frames_.pop_back();
    return dom_.end_array();
  }
  bool parse_error(std::size_t pos, const std::string& token, const nlohmann::detail::exception& e) {
    error = io::json_reason(e);
    error_at = pos;
    return dom_.parse_error(pos, token, e);
  }

  std::string error;
  std::size_t error_at = 0;

 private:
  enum class Mode { none, vocab, merges };
  bool capturing() const { return mode_ != Mode::none; }
  // The value now starting sits at root.<a>.<b>.
  bool at(std::initializer_list<const char*> path) const {
    if (frames_.size() != path.size()) return false;
    size_t i = 0;
    for (const char* k : path)
      if (frames_[i++] != k) return false;
    return true;
  }
  void fail(const std::string& what) {
    if (!data_.error.empty()) return;
    data_.error = what;
    data_.error_at =
        mode_ == Mode::vocab ? "model.vocab" : hs::str("model.merges[", data_.merges.size(), "]");
  }
  bool vocab_id(int64_t id) {
    if (id < 0 || id > INT32_MAX)
      fail(hs::str("token '", key_, "' has id ", id, "; expected a non-negative integer"));
    data_.vocab.emplace_back(std::move(key_), id);
    return true;
  }
  bool value(const char* what) {
    if (mode_ == Mode::vocab) {
      if (depth_ == 1) {
        fail(hs::str("token '", key_, "' has ", what, " as its id; expected a non-negative integer"));
        data_.vocab.emplace_back(std::move(key_), -1);
      } else {
        fail(hs::str("token '", key_, "' has a nested value; expected a non-negative integer"));
      }
      return true;
    }
    if (mode_ == Mode::merges) {
      if (depth_ == 1) {
        fail(hs::str("expected \"a b\" or [\"a\", \"b\"], got ", what));
        data_.merges.push_back({});
      } else if (depth_ == 2) {
        pair_.push_back({});
        pair_.push_back({});  // wrong size: reported at the end of the array
        pair_.push_back({});
      }
      return true;
    }
    return dom_.null();
  }

  nlohmann::detail::json_sax_dom_parser<json> dom_;
  ModelData& data_;
  std::vector<std::string> frames_;  // key of the current member at each object depth
  Mode mode_ = Mode::none;
  int depth_ = 0;
  std::string key_;
  std::vector<std::string> pair_;
};

}  // namespace

nlohmann::json parse_tokenizer_json(const std::string& path, const std::string& text, ModelData& data) {
  nlohmann::json root;
  TokenizerSax sax(root, data);
  bool ok = nlohmann::json::sax_parse(text, &sax);
  if (!ok || !sax.error.empty()) {
    io::JsonFailure f = io::diagnose_json(text);  // the key path of the failure
    if (!sax.error.empty()) {
      f.reason = sax.error;
      f.offset = io::json_error_offset(sax.error_at, text.size());
    }
    io::throw_json_error(
        path, text, f,
        {"cannot parse JSON", "the file is truncated or not JSON; download tokenizer.json again"});
  }
  return root;
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
