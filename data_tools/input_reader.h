// Input files of `hsloth prep`: JSONL (one record per non-blank line), a JSON array of records, or one JSON
// object spread over several lines (a pretty-printed `.json` holding a single record, e.g. Axolotl's
// conversation.json), either plain or gzip-compressed. Compression is detected from the bytes (zlib reads
// plain files as-is) and the layout from the first non-blank character ('[' = array; '{' whose line ends
// inside the object after '{', '[', ',' or ':' = one document; else JSONL), so `.json`, `.jsonl`,
// `.json.gz` and `.jsonl.gz` all work whatever their names say. Blank lines cost linear time. Records come
// back unparsed, with the line where they start: a rank only parses its own share, and every error names
// `file:line` (and the record index for arrays). JSONL lines are streamed (memory does not grow with the
// file); an array is read whole and split into records by a small scanner, so a malformed element is one bad
// record, not a lost file; a document is read whole and must hold exactly one JSON value.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/json.h"

namespace hs::data_tools {

enum class Utf8Policy { repair, fail };

struct RawRecord {
  int64_t index = 0;  // 0-based record number in the file
  int64_t line = 0;   // 1-based line where the record starts
  std::string text;   // the record's JSON text
};

class RecordReader {
 public:
  // Throws hs::Error naming the file when it cannot be opened or decompressed.
  explicit RecordReader(const std::string& path);
  ~RecordReader();
  RecordReader(RecordReader&&) noexcept;
  RecordReader& operator=(RecordReader&&) noexcept;

  // The next record, or false at the end. Structural errors that make record boundaries unknowable
  // (unterminated array or string, missing comma, truncated gzip) throw hs::Error with file:line.
  bool next(RawRecord& out);

  bool is_json_array() const;
  bool is_gzip() const;
  const std::string& path() const;
  // "data.jsonl:12" for JSONL, "data.json:40 (record 3)" for arrays.
  std::string where(const RawRecord& r) const;
  // Progress in bytes of the file on disk (compressed bytes for gzip).
  int64_t bytes_done() const;
  int64_t bytes_total() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Applies the UTF-8 policy to a record's text: returns the number of U+FFFD replacements (repair) or
// throws hs::Error at `where` with the byte offset (fail).
size_t apply_utf8_policy(std::string& text, Utf8Policy policy, const std::string& where);

// Parses one record's JSON text (keys in file order); throws malformed_json() at `where`.
nlohmann::ordered_json parse_json_record(const std::string& text, const std::string& where);

// The error of a record whose JSON does not parse, at `where` (the record's place in its file):
// "malformed JSON at the record's line L, column C: <reason>", the position from io::line_col.
Error malformed_json(std::string_view text, const io::JsonFailure& failure, const std::string& where);

}  // namespace hs::data_tools
