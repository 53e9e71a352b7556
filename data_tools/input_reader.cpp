// RecordReader: zlib gz* streams (transparent for plain files), a line splitter for JSONL and a small
// structural scanner for JSON arrays (strings, escapes and nesting; the records themselves are parsed
// later by nlohmann::json).
#include "data_tools/input_reader.h"

#include <zlib.h>

#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "data_tools/utf8.h"

namespace hs::data_tools {

namespace {
constexpr size_t kReadChunk = 1 << 20;

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
}  // namespace

struct RecordReader::Impl {
  std::string path;
  gzFile gz = nullptr;
  bool eof = false, array = false, gzip = false, done = false, after_comma = false;
  bool document = false;  // one JSON object spread over lines (a pretty-printed .json file)
  int64_t size = 0;
  std::string buf;  // JSONL: unconsumed bytes; array and document: the whole file
  size_t pos = 0;
  int64_t line = 1, index = 0;

  ~Impl() {
    if (gz) gzclose(gz);
  }

  // Appends up to n decompressed bytes to buf; false at the end of the stream.
  bool read_more(size_t n) {
    if (eof) return false;
    size_t old = buf.size();
    buf.resize(old + n);
    int got = gzread(gz, buf.data() + old, unsigned(n));
    if (got < 0) {
      int errnum = 0;
      const char* msg = gzerror(gz, &errnum);
      throw Error(str("cannot read: ", msg ? msg : "zlib error"))
          .at(path)
          .hint("the file is truncated or damaged (re-download or re-compress it)");
    }
    buf.resize(old + size_t(got));
    if (size_t(got) < n) {
      int errnum = 0;
      const char* msg = gzerror(gz, &errnum);
      if (errnum != Z_OK && errnum != Z_STREAM_END)
        throw Error(str("cannot decompress: ", msg ? msg : "zlib error"))
            .at(path)
            .hint("the gzip file is truncated or damaged (re-download or re-compress it)");
      if (got == 0) eof = true;
    }
    return got > 0;
  }

  Error structural(const std::string& what) const {
    return Error(what)
        .at(str(path, ":", line))
        .hint(
            "a .json input must be one JSON array of records ([{...}, {...}]); JSONL holds one record per "
            "line");
  }

  void skip_ws() {
    while (pos < buf.size() && is_ws(buf[pos])) {
      if (buf[pos] == '\n') ++line;
      ++pos;
    }
  }

  void scan_string() {  // at the opening quote
    int64_t start_line = line;
    ++pos;
    while (pos < buf.size()) {
      char c = buf[pos];
      if (c == '\\') {
        pos += 2;
        continue;
      }
      if (c == '"') {
        ++pos;
        return;
      }
      if (c == '\n') ++line;
      ++pos;
    }
    line = start_line;
    throw structural("unterminated string");
  }

  void scan_value() {
    char c = buf[pos];
    if (c == '"') return scan_string();
    if (c == '{' || c == '[') {
      int64_t start_line = line;
      int depth = 0;
      while (pos < buf.size()) {
        char ch = buf[pos];
        if (ch == '"') {
          scan_string();
          continue;
        }
        if (ch == '{' || ch == '[') ++depth;
        if (ch == '}' || ch == ']') {
          if (--depth == 0) {
            ++pos;
            return;
          }
        }
        if (ch == '\n') ++line;
        ++pos;
      }
      line = start_line;
      throw structural(str("record ", index, " is not closed (missing '", c == '{' ? '}' : ']', "')"));
    }
    while (pos < buf.size() && !is_ws(buf[pos]) && buf[pos] != ',' && buf[pos] != ']') ++pos;
  }

  bool next_array(RawRecord& out) {
    if (done) return false;
    skip_ws();
    if (pos >= buf.size()) throw structural("the array is not closed (missing ']')");
    if (buf[pos] == ']') {
      if (after_comma) throw structural("trailing ',' before ']'");
      ++pos;
      finish_array();
      return false;
    }
    size_t start = pos;
    out.line = line;
    out.index = index;
    scan_value();
    out.text.assign(buf, start, pos - start);
    skip_ws();
    if (pos >= buf.size()) throw structural("the array is not closed (missing ']')");
    if (buf[pos] == ',') {
      ++pos;
      after_comma = true;
    } else if (buf[pos] == ']') {
      ++pos;
      finish_array();
    } else {
      throw structural(str("expected ',' or ']' after record ", index, ", found '", buf[pos], "'"));
    }
    ++index;
    return true;
  }

  void finish_array() {
    done = true;
    skip_ws();
    if (pos < buf.size()) throw structural("unexpected text after the closing ']'");
  }

  // At a '{' that starts the file: true when its line ends inside the object right after a structural
  // character ('{', '[', ',' or ':'), as pretty-printers leave it. Such a file is read as one JSON
  // document; a JSONL line that is merely broken ("{broken") stays a malformed JSONL record.
  bool first_line_opens_document() {
    size_t nl = buf.find('\n');
    while (nl == std::string::npos && !eof) {
      size_t from = buf.size();
      read_more(kReadChunk);
      nl = buf.find('\n', from);
    }
    if (nl == std::string::npos) return false;
    int depth = 0;
    bool in_string = false;
    char last = 0;
    for (size_t i = 0; i < nl; ++i) {
      char c = buf[i];
      if (in_string) {
        if (c == '\\')
          ++i;
        else if (c == '"')
          in_string = false;
        last = '"';
        continue;
      }
      if (c == '"')
        in_string = true;
      else if (c == '{' || c == '[')
        ++depth;
      else if (c == '}' || c == ']')
        --depth;
      if (!is_ws(c)) last = c;
    }
    return !in_string && depth > 0 && (last == '{' || last == '[' || last == ',' || last == ':');
  }

  bool next_document(RawRecord& out) {
    if (done) return false;
    done = true;
    out.line = line;
    out.index = index;
    scan_value();  // a '{' not closed by the end of the file is a structural error at its line
    ++index;
    out.text.assign(buf, 0, pos);
    skip_ws();
    if (pos < buf.size())
      throw Error(str("unexpected text after the JSON object that starts at line ", out.line))
          .at(str(path, ":", line))
          .hint(
              "a .json file holds one JSON object or one array of records ([{...}, {...}]); JSONL holds one "
              "record per line");
    return true;
  }

  bool next_line(RawRecord& out) {
    for (;;) {
      size_t nl = buf.find('\n', pos);
      while (nl == std::string::npos && !eof) {
        if (pos > 0) {
          buf.erase(0, pos);
          pos = 0;
        }
        size_t from = buf.size();
        read_more(kReadChunk);
        nl = buf.find('\n', from);
      }
      size_t end = nl == std::string::npos ? buf.size() : nl;
      if (pos >= buf.size() && nl == std::string::npos) return false;
      size_t e = end;
      if (e > pos && buf[e - 1] == '\r') --e;
      int64_t this_line = line++;
      size_t b = pos;
      pos = nl == std::string::npos ? buf.size() : nl + 1;
      bool blank = true;
      for (size_t i = b; i < e && blank; ++i) blank = is_ws(buf[i]);
      if (blank) continue;
      out.text.assign(buf, b, e - b);
      out.line = this_line;
      out.index = index++;
      return true;
    }
  }
};

RecordReader::RecordReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.path = path;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw Error(std::filesystem::exists(path, ec) ? "not a regular file" : "input file not found")
        .at(path)
        .hint("check the --input path");
  m.size = int64_t(std::filesystem::file_size(path, ec));
  m.gz = gzopen(path.c_str(), "rb");
  if (!m.gz) throw Error(str("cannot open: ", std::strerror(errno))).at(path);
  gzbuffer(m.gz, kReadChunk);
  // Choose the layout from the first non-blank character (after a UTF-8 byte-order mark). The blank
  // prefix is dropped as it is read (its lines counted), so a file of blank lines costs linear time and
  // one buffer of memory.
  bool more = true;
  while (more && m.buf.size() < 3) more = m.read_more(4096);
  m.gzip = gzdirect(m.gz) == 0;
  if (m.buf.compare(0, 3, "\xEF\xBB\xBF") == 0) m.buf.erase(0, 3);
  for (;;) {
    size_t i = 0;
    while (i < m.buf.size() && is_ws(m.buf[i])) {
      if (m.buf[i] == '\n') ++m.line;
      ++i;
    }
    m.buf.erase(0, i);
    if (!m.buf.empty() || !more) break;
    more = m.read_more(kReadChunk);
  }
  m.array = !m.buf.empty() && m.buf[0] == '[';
  if (!m.buf.empty() && m.buf[0] == '{') m.document = m.first_line_opens_document();
  if (m.array || m.document) {
    while (m.read_more(4 * kReadChunk)) {
    }
    if (m.array) ++m.pos;  // '['
  }
}

RecordReader::~RecordReader() = default;
RecordReader::RecordReader(RecordReader&&) noexcept = default;
RecordReader& RecordReader::operator=(RecordReader&&) noexcept = default;

bool RecordReader::next(RawRecord& out) {
  if (impl_->document) return impl_->next_document(out);
  return impl_->array ? impl_->next_array(out) : impl_->next_line(out);
}
bool RecordReader::is_json_array() const { return impl_->array; }
bool RecordReader::is_gzip() const { return impl_->gzip; }
const std::string& RecordReader::path() const { return impl_->path; }

std::string RecordReader::where(const RawRecord& r) const {
  if (impl_->array) return str(impl_->path, ":", r.line, " (record ", r.index, ")");
  return str(impl_->path, ":", r.line);
}

int64_t RecordReader::bytes_total() const { return impl_->size; }

int64_t RecordReader::bytes_done() const {
  const Impl& m = *impl_;
  if (m.array || m.document)
    return m.buf.empty() ? m.size : int64_t(double(m.pos) / double(m.buf.size()) * double(m.size));
  if (m.eof && m.pos >= m.buf.size()) return m.size;
  z_off_t off = gzoffset(m.gz);
  return off < 0 ? 0 : std::min<int64_t>(int64_t(off), m.size);
}

size_t apply_utf8_policy(std::string& text, Utf8Policy policy, const std::string& where) {
  if (policy == Utf8Policy::fail) {
    size_t bad = find_invalid_utf8(text);
    if (bad != kUtf8Valid) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", unsigned(static_cast<unsigned char>(text[bad])));
      throw Error(str("invalid UTF-8 (byte ", hex, " at byte ", bad, " of the record)"))
          .at(where)
          .hint("fix the file's encoding, or pass --invalid-utf8 repair to replace bad bytes with U+FFFD");
    }
    return 0;
  }
  return repair_utf8(text);
}

Error malformed_json(std::string_view text, const io::JsonFailure& failure, const std::string& where) {
  return Error("malformed JSON at the record's " + io::describe_json_failure(text, failure))
      .at(where);  // the callers add the hint (skip or fix, or how auto detection failed)
}

nlohmann::ordered_json parse_json_record(const std::string& text, const std::string& where) {
  auto j = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    io::JsonFailure f = io::diagnose_json(text);
    f.key_path.clear();  // as the lean parser: the position only
    throw malformed_json(text, f, where);
  }
  return j;
}

}  // namespace hs::data_tools
