// The one JSON reader with positions. Every JSON file the project reads (config.json, tokenizer files,
// adapter_config.json, safetensors headers and indexes, manifests, checkpoint lists) goes through
// read_json()/parse_json(); a syntax error or an out-of-range number becomes one hs::Error at
// "FILE:LINE:COLUMN" with nlohmann's reason, the key being parsed and a hint. Streaming parsers that
// build their own values (the tokenizer's vocab capture, prep's lean records) keep their SAX handlers and
// take their positions and reasons from the same helpers (line_col, json_reason, diagnose_json).
#pragma once

#include <cstddef>
#include <exception>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace hs::io {

// 1-based line and column (counted in bytes) of the byte at `offset` of `text`. An offset at or past the
// end is the position just after the last byte.
struct LineCol {
  size_t line = 1, column = 1;
};
LineCol line_col(std::string_view text, size_t offset);

// The byte offset of a failure that nlohmann's SAX parse_error(position, ...) reports: `position` counts
// the bytes read, so the byte that failed is the one before it (clamped to the text).
size_t json_error_offset(size_t position, size_t text_size);

// nlohmann's reason without its exception tag and its own position:
// "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error ..." -> "syntax error ...".
std::string json_reason(const std::exception& e);

// Where and why a parse of a text failed, found by replaying it.
struct JsonFailure {
  size_t offset = 0;     // byte of the text where the parser stopped
  std::string reason;    // json_reason() of nlohmann's error
  std::string key_path;  // the value being parsed ("added_tokens[3].id"); empty at the top level
};
// Replays a parse of `text` that failed; a text that parses gives an empty reason.
JsonFailure diagnose_json(std::string_view text);
// "line <line>, column <column>: <reason>" of a failure in `text` (for JSON inside a record or a field,
// where the caller names the place of the text itself).
std::string describe_json_failure(std::string_view text, const JsonFailure& f);

// How a reader words its error: "<what>: <reason>" and the fix.
struct JsonErrorText {
  std::string what = "not valid JSON";
  std::string hint = "the file is truncated or not JSON; fix it at that line and column, or write it again";
};

// hs::Error at "<source>:<line>:<column>" reading "<what>[ at key '<key>' (line <line>)]: <reason>".
[[noreturn]] void throw_json_error(const std::string& source, std::string_view text, const JsonFailure& f,
                                   const JsonErrorText& text_of_error = {});

// Parses `text` (read from `source`, a file name or a label); errors as throw_json_error().
nlohmann::json parse_json(std::string_view text, const std::string& source, const JsonErrorText& e = {});
nlohmann::ordered_json parse_ordered_json(std::string_view text, const std::string& source,
                                          const JsonErrorText& e = {});
// Reads and parses a file (read errors name the path).
nlohmann::json read_json(const std::string& path, const JsonErrorText& e = {});
nlohmann::ordered_json read_ordered_json(const std::string& path, const JsonErrorText& e = {});

}  // namespace hs::io
