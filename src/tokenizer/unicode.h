// Unicode for the tokenizer: general categories and White_Space as HF tokenizers' regexes see them
// (Unicode 16.0), NFC/NFD as HF's normalizer does it (Unicode 9.0 data), simple case folding, and UTF-8
// helpers. The data is generated (unicode_tables.cpp); init() expands the category runs once into a
// flat byte per code point so that the regex hot loop does one load per character.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hs::tokenizer::unicode {

enum Category : uint8_t {
  Cn,
  Lu,
  Ll,
  Lt,
  Lm,
  Lo,
  Mn,
  Mc,
  Me,
  Nd,
  Nl,
  No,
  Pc,
  Pd,
  Ps,
  Pe,
  Pi,
  Pf,
  Po,
  Sm,
  Sc,
  Sk,
  So,
  Zs,
  Zl,
  Zp,
  Cc,
  Cf,
  Cs,
  Co,
  kCategoryCount
};

// One byte per code point: category (5 bits), White_Space, NFC_QC != Yes, canonical class != 0.
constexpr uint8_t kCategoryMask = 0x1F, kWhiteBit = 0x20, kNfcQcBit = 0x40, kCccBit = 0x80;

// Builds the lookup tables (once, thread-safe). Tokenizer::from_file and Regex::compile call it.
void init();
const char* unicode_version();        // regex classes
const char* normalization_version();  // NFC/NFD data

namespace detail {
extern uint8_t g_props[0x110000];
}
inline uint8_t props(uint32_t cp) { return cp < 0x110000 ? detail::g_props[cp] : 0; }
inline Category category(uint32_t cp) { return Category(props(cp) & kCategoryMask); }
inline bool is_letter(uint32_t cp) {
  auto c = category(cp);
  return c >= Lu && c <= Lo;
}
inline bool is_number(uint32_t cp) {
  auto c = category(cp);
  return c >= Nd && c <= No;
}
inline bool is_white(uint32_t cp) { return props(cp) & kWhiteBit; }
// Rust regex \w (Alphabetic, M, Nd, Pc, Join_Control): used by added tokens' single_word.
bool is_word(uint32_t cp);
// Oniguruma \w (L, M, Nd, Pc).
bool is_onig_word(uint32_t cp);
uint8_t combining_class(uint32_t cp);
// Simple case folding; cp itself when it has none.
uint32_t simple_fold(uint32_t cp);
// Every code point with the same simple case fold as cp (cp included), for (?i:...) literals.
std::vector<uint32_t> case_variants(uint32_t cp);

// ---- UTF-8 ----
// Decodes the character at p (the text is valid UTF-8); sets *len to its byte length.
inline uint32_t decode_utf8(const unsigned char* p, int* len) {
  unsigned c = p[0];
  if (c < 0x80) {
    *len = 1;
    return c;
  }
  if (c < 0xE0) {
    *len = 2;
    return ((c & 0x1F) << 6) | (p[1] & 0x3F);
  }
  if (c < 0xF0) {
    *len = 3;
    return ((c & 0x0F) << 12) | ((p[1] & 0x3F) << 6) | (p[2] & 0x3F);
  }
  *len = 4;
  return ((c & 0x07) << 18) | ((p[1] & 0x3F) << 12) | ((p[2] & 0x3F) << 6) | (p[3] & 0x3F);
}
inline int utf8_length(unsigned char lead) { return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4; }
// Offset of the first byte that is not part of valid UTF-8 (std::string_view::npos when all valid).
size_t first_invalid_utf8(std::string_view s);
void append_utf8(std::string& out, uint32_t cp);
// Replaces each maximal invalid subsequence by U+FFFD, like Rust's String::from_utf8_lossy and
// Python's bytes.decode(errors="replace").
std::string to_valid_utf8(std::string_view bytes);

// ---- normalization ----
// True when s is certainly NFC (the quick check says Yes); false means "normalize and see".
bool is_nfc_quick(std::string_view s);
// NFC (compose = true) or NFD of valid UTF-8 s. For every output byte, src holds the input byte range
// [first, second) of the characters it was made from.
void normalize(std::string_view s, bool compose, std::string& out,
               std::vector<std::pair<uint32_t, uint32_t>>& src);

}  // namespace hs::tokenizer::unicode
