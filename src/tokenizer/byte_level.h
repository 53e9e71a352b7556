// GPT-2's reversible byte <-> character map (ByteLevel pre-tokenizer and decoder): printable bytes
// ! .. ~, ¡ .. ¬, ® .. ÿ stand for themselves; the other 68 bytes map to U+0100 upwards in order.
#pragma once

#include <array>
#include <cstdint>

namespace hs::tokenizer::byte_level {

inline const std::array<uint32_t, 256>& byte_to_char() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[b] = keep ? b : next++;
    }
    return t;
  }();
  return table;
}

// The byte a character stands for, or -1 when it is not one of the 256.
inline int char_to_byte(uint32_t cp) {
  static const std::array<int16_t, 324> table = [] {
    std::array<int16_t, 324> t{};
    t.fill(-1);
    for (uint32_t b = 0; b < 256; ++b) t[byte_to_char()[b]] = int16_t(b);
    return t;
  }();
  return cp < table.size() ? table[cp] : -1;
}

}  // namespace hs::tokenizer::byte_level
