// UTF-8 decoding by the table of well-formed byte sequences (Unicode Table 3-7).
#include "data_tools/utf8.h"

#include <cstdint>

namespace hs::data_tools {
namespace {
// Length of the valid sequence at p (1-4), or 0 if invalid; on 0, *bad = bytes in the maximal subpart.
size_t decode_one(const unsigned char* p, size_t left, size_t* bad) {
  unsigned char b = p[0];
  if (b < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b == 0xE0) {
    need = 2, lo = 0xA0;
  } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
    need = 2;
  } else if (b == 0xED) {
    need = 2, hi = 0x9F;
  } else if (b == 0xF0) {
    need = 3, lo = 0x90;
  } else if (b >= 0xF1 && b <= 0xF3) {
    need = 3;
  } else if (b == 0xF4) {
    need = 3, hi = 0x8F;
  } else {
    *bad = 1;  // 0x80-0xC1, 0xF5-0xFF never start a sequence
    return 0;
  }
  for (size_t k = 1; k <= need; ++k) {
    if (k >= left) {
      *bad = k;
      return 0;
    }
    unsigned char c = p[k];
    unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (c < l || c > h) {
      *bad = k;
      return 0;
    }
  }
  return need + 1;
}
}  // namespace

size_t find_invalid_utf8(std::string_view s) {
  auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0, n = s.size();
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    size_t bad = 0, len = decode_one(p + i, n - i, &bad);
    if (len == 0) return i;
    i += len;
  }
  return kUtf8Valid;
}

size_t repair_utf8(std::string& s) {
  size_t first = find_invalid_utf8(s);
  if (first == kUtf8Valid) return 0;
  std::string out(s, 0, first);
  out.reserve(s.size() + 16);
  auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = first, n = s.size(), count = 0;
  while (i < n) {
    size_t bad = 0, len = p[i] < 0x80 ? 1 : decode_one(p + i, n - i, &bad);
    if (len > 0) {
      out.append(s, i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++count;
      i += bad;
    }
  }
  s = std::move(out);
  return count;
}

}  // namespace hs::data_tools
