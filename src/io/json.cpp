// The JSON reader with positions (see json.h). A text is parsed once without exceptions; only when that
// fails is it replayed through a small SAX handler that records the byte where the parser stopped and the
// key path it was in, so the good path costs nothing extra and every failure (syntax errors, and number
// overflows such as 1e99999, which nlohmann reports without a position) gets the same FILE:LINE:COLUMN.
#include "io/json.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "io/file.h"

namespace hs::io {

LineCol line_col(std::string_view text, size_t offset) {
  offset = std::min(offset, text.size());
  LineCol lc;
  size_t line_start = 0;
  for (size_t i = 0; i < offset; ++i)
    if (text[i] == '\n') {
      ++lc.line;
      line_start = i + 1;
    }
  lc.column = offset - line_start + 1;
  return lc;
}

size_t json_error_offset(size_t position, size_t text_size) {
  return std::min(position > 0 ? position - 1 : 0, text_size);
}

std::string json_reason(const std::exception& e) {
  std::string what = e.what();
  if (what.rfind("[json.exception.", 0) == 0)
    if (auto cut = what.find("] "); cut != std::string::npos) what.erase(0, cut + 2);
  // parse_error's own position: "parse error at line 3, column 7: <reason>" or "parse error: <reason>".
  if (what.rfind("parse error", 0) == 0)
    if (auto cut = what.find(": "); cut != std::string::npos) what.erase(0, cut + 2);
  return what;
}

namespace {

// Replays a failed parse: the position and reason of the error, and the key path of the value being read.
class WhereSax {
 public:
  using json = nlohmann::json;
  bool null() { return value(); }
  bool boolean(bool) { return value(); }
  bool number_integer(json::number_integer_t) { return value(); }
  bool number_unsigned(json::number_unsigned_t) { return value(); }
  bool number_float(json::number_float_t, const json::string_t&) { return value(); }
  bool string(json::string_t&) { return value(); }
  bool binary(json::binary_t&) { return value(); }
  bool key(json::string_t& k) {
    frames_.back().key = k;
    return true;
  }
  bool start_object(std::size_t) { return open(true); }
  bool start_array(std::size_t) { return open(false); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception& e) {
    failed_at = pos;
    reason = json_reason(e);
    for (const auto& f : frames_) {
      if (f.object) {
        if (f.key.empty()) continue;
        if (!path.empty()) path += '.';
        path += f.key;
      } else {
        path += '[';
        path += std::to_string(f.index);
        path += ']';
      }
    }
    return false;
  }
  std::string path, reason;
  std::size_t failed_at = 0;

 private:
  struct Frame {
    bool object;
    std::string key;
    size_t index = 0;
  };
  bool value() {
    if (!frames_.empty() && !frames_.back().object) ++frames_.back().index;
    return true;
  }
  bool open(bool object) {
    frames_.push_back({object, {}, 0});
    return true;
  }
  bool close() {
    frames_.pop_back();
    return value();
  }
  std::vector<Frame> frames_;
};

template <typename Json>
Json parse_as(std::string_view text, const std::string& source, const JsonErrorText& e) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw_json_error(source, text, diagnose_json(text), e);
  return j;
}

}  // namespace

JsonFailure diagnose_json(std::string_view text) {
  WhereSax sax;
  JsonFailure f;
  if (nlohmann::json::sax_parse(text.begin(), text.end(), &sax)) return f;
  f.offset = json_error_offset(sax.failed_at, text.size());
  f.reason = sax.reason.empty() ? "unknown parse error" : sax.reason;
  f.key_path = sax.path;
  return f;
}

std::string describe_json_failure(std::string_view text, const JsonFailure& f) {
  const LineCol at = line_col(text, f.offset);
  return str("line ", at.line, ", column ", at.column, ": ", f.reason);
}

void throw_json_error(const std::string& source, std::string_view text, const JsonFailure& f,
                      const JsonErrorText& t) {
  const LineCol at = line_col(text, f.offset);
  std::string what = t.what;
  if (!f.key_path.empty()) what += str(" at key '", f.key_path, "' (line ", at.line, ")");
  Error err(what + ": " + f.reason);
  err.at(str(source, ":", at.line, ":", at.column));
  if (!t.hint.empty()) err.hint(t.hint);
  throw err;
}

nlohmann::json parse_json(std::string_view text, const std::string& source, const JsonErrorText& e) {
  return parse_as<nlohmann::json>(text, source, e);
}
nlohmann::ordered_json parse_ordered_json(std::string_view text, const std::string& source,
                                          const JsonErrorText& e) {
  return parse_as<nlohmann::ordered_json>(text, source, e);
}
nlohmann::json read_json(const std::string& path, const JsonErrorText& e) {
  return parse_json(read_file(path), path, e);
}
nlohmann::ordered_json read_ordered_json(const std::string& path, const JsonErrorText& e) {
  return parse_ordered_json(read_file(path), path, e);
}

}  // namespace hs::io
