// UTF-8 validation and repair for prep's `--invalid-utf8 repair|fail`. Repair replaces each maximal
// invalid subpart (Unicode's "substitution of maximal subparts", which is what Python's
// bytes.decode("utf-8", errors="replace") does) with U+FFFD, so a repaired record reads exactly as the
// Python tools of the field would read it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace hs::data_tools {

inline constexpr size_t kUtf8Valid = std::string_view::npos;

// Byte offset of the first invalid sequence, or kUtf8Valid.
size_t find_invalid_utf8(std::string_view s);
// Replaces invalid sequences in place; returns how many U+FFFD were inserted (0 = was valid).
size_t repair_utf8(std::string& s);

}  // namespace hs::data_tools
