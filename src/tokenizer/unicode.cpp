// Lookup structures over the generated Unicode data: a flat property byte per code point (built once),
// hash maps for combining classes, decompositions and compositions (used only off the quick path),
// and the UTF-8 helpers. Normalization follows UAX #15: full canonical decomposition, canonical
// ordering, then canonical composition with Hangul done algorithmically.
#include "tokenizer/unicode.h"

#include <algorithm>
#include <mutex>
#include <unordered_map>

#include "tokenizer/unicode_tables.h"

namespace hs::tokenizer::unicode {

namespace detail {
uint8_t g_props[0x110000];
}

namespace {

namespace ud = unicode_data;

struct Maps {
  std::unordered_map<uint32_t, uint8_t> ccc;
  std::unordered_map<uint32_t, std::pair<uint32_t, uint32_t>> decomp;  // cp -> (offset, length)
  std::unordered_map<uint64_t, uint32_t> compose;
  std::unordered_map<uint32_t, uint32_t> fold;
};

Maps* g_maps = nullptr;
std::once_flag g_once;

constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

void build() {
  using detail::g_props;
  for (size_t i = 0; i < ud::kCategoryRuns_size; ++i) {
    uint32_t start = ud::kCategoryRuns[i] >> 8;
    uint32_t end = i + 1 < ud::kCategoryRuns_size ? ud::kCategoryRuns[i + 1] >> 8 : 0x110000;
    std::fill(g_props + start, g_props + end, uint8_t(ud::kCategoryRuns[i] & 0xFF));
  }
  for (size_t i = 0; i < ud::kWhiteSpace_size; ++i) g_props[ud::kWhiteSpace[i]] |= kWhiteBit;
  for (size_t i = 0; i + 1 < ud::kNfcQcNotYesRanges_size; i += 2)
    for (uint32_t c = ud::kNfcQcNotYesRanges[i]; c <= ud::kNfcQcNotYesRanges[i + 1]; ++c)
      g_props[c] |= kNfcQcBit;
  auto* m = new Maps;
  for (size_t i = 0; i < ud::kCombiningClass_size; ++i) {
    uint32_t cp = ud::kCombiningClass[i] >> 8;
    m->ccc[cp] = uint8_t(ud::kCombiningClass[i] & 0xFF);
    g_props[cp] |= kCccBit;
  }
  for (size_t i = 0; i + 1 < ud::kDecompIndex_size; i += 2)
    m->decomp[ud::kDecompIndex[i]] = {ud::kDecompIndex[i + 1] >> 4, ud::kDecompIndex[i + 1] & 0xF};
  for (size_t i = 0; i + 2 < ud::kCompose_size; i += 3)
    m->compose[uint64_t(ud::kCompose[i]) << 32 | ud::kCompose[i + 1]] = ud::kCompose[i + 2];
  for (size_t i = 0; i + 1 < ud::kCaseFold_size; i += 2) m->fold[ud::kCaseFold[i]] = ud::kCaseFold[i + 1];
  g_maps = m;
}

const Maps& maps() {
  init();
  return *g_maps;
}

uint32_t compose_pair(const Maps& m, uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  auto it = m.compose.find(uint64_t(a) << 32 | b);
  return it == m.compose.end() ? 0 : it->second;
}

struct Unit {
  uint32_t cp, begin, end;
  uint8_t ccc;
};

}  // namespace

void init() { std::call_once(g_once, build); }
const char* unicode_version() { return ud::kUnicodeVersion; }
const char* normalization_version() { return ud::kNormalizationVersion; }

bool is_onig_word(uint32_t cp) {
  auto c = category(cp);
  return (c >= Lu && c <= Nd) || c == Pc;
}

bool is_word(uint32_t cp) {
  auto c = category(cp);
  if ((c >= Lu && c <= Nl) || c == Pc) return true;
  // Binary search over [first, last] pairs.
  size_t lo = 0, hi = ud::kWordExtraRanges_size / 2;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (cp < ud::kWordExtraRanges[2 * mid])
      hi = mid;
    else if (cp > ud::kWordExtraRanges[2 * mid + 1])
      lo = mid + 1;
    else
      return true;
  }
  return false;
}

uint8_t combining_class(uint32_t cp) {
  if (!(props(cp) & kCccBit)) return 0;
  const auto& m = maps();
  auto it = m.ccc.find(cp);
  return it == m.ccc.end() ? 0 : it->second;
}

uint32_t simple_fold(uint32_t cp) {
  const auto& m = maps();
  auto it = m.fold.find(cp);
  return it == m.fold.end() ? cp : it->second;
}

std::vector<uint32_t> case_variants(uint32_t cp) {
  const auto& m = maps();
  uint32_t f = simple_fold(cp);
  std::vector<uint32_t> out{cp};
  if (f != cp) out.push_back(f);
  for (const auto& [from, to] : m.fold)
    if (to == f && from != cp) out.push_back(from);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

size_t first_invalid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (int k = 2; k < len; ++k)
      if ((p[i + k] & 0xC0) != 0x80) return i;
    i += len;
  }
  return std::string_view::npos;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

std::string to_valid_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t n = bytes.size(), i = 0;
  while (i < n) {
    size_t bad = first_invalid_utf8(bytes.substr(i));
    if (bad == std::string_view::npos) {
      out.append(bytes.substr(i));
      break;
    }
    out.append(bytes.substr(i, bad));
    i += bad;
    // The maximal subpart: the lead byte plus the continuation bytes that were still valid.
    unsigned c = p[i];
    size_t len = 1;
    uint32_t lo = 0x80, hi = 0xBF;
    size_t need = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    for (size_t k = 0; k < need && i + len < n; ++k) {
      unsigned b = p[i + len];
      if (k == 0 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) break;
      ++len;
    }
    out.append("\xEF\xBF\xBD");
    i += len;
  }
  return out;
}

bool is_nfc_quick(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  uint8_t last = 0;
  for (size_t i = 0; i < n;) {
    if (p[i] < 0x80) {
      last = 0;
      ++i;
      continue;
    }
    int len;
    uint32_t cp = decode_utf8(p + i, &len);
    i += len;
    uint8_t pr = props(cp);
    if (!(pr & (kNfcQcBit | kCccBit))) {
      last = 0;
      continue;
    }
    if (pr & kNfcQcBit) return false;
    uint8_t k = combining_class(cp);
    if (k && last > k) return false;
    last = k;
  }
  return true;
}

void normalize(std::string_view s, bool compose, std::string& out,
               std::vector<std::pair<uint32_t, uint32_t>>& src) {
  const Maps& m = maps();
  thread_local std::vector<Unit> buf, res;
  buf.clear();
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size();) {
    int len;
    uint32_t cp = decode_utf8(p + i, &len);
    uint32_t b = uint32_t(i), e = uint32_t(i + len);
    i += len;
    if (cp >= kSBase && cp < kSBase + kSCount) {
      uint32_t si = cp - kSBase;
      buf.push_back({kLBase + si / kNCount, b, e, 0});
      buf.push_back({kVBase + si % kNCount / kTCount, b, e, 0});
      if (si % kTCount) buf.push_back({kTBase + si % kTCount, b, e, 0});
      continue;
    }
    auto it = cp < 0xC0 ? m.decomp.end() : m.decomp.find(cp);
    if (it == m.decomp.end()) {
      buf.push_back({cp, b, e, combining_class(cp)});
    } else {
      for (uint32_t k = 0; k < it->second.second; ++k) {
        uint32_t d = unicode_data::kDecompChars[it->second.first + k];
        buf.push_back({d, b, e, combining_class(d)});
      }
    }
  }
  // Canonical ordering: a stable insertion sort of each run of non-starters by class.
  for (size_t i = 1; i < buf.size(); ++i) {
    for (size_t j = i; j > 0 && buf[j].ccc != 0 && buf[j - 1].ccc > buf[j].ccc; --j)
      std::swap(buf[j - 1], buf[j]);
  }
  std::vector<Unit>* final_units = &buf;
  if (compose) {
    res.clear();
    long starter = -1;
    int last = -1;
    for (const Unit& u : buf) {
      if (starter >= 0) {
        bool adjacent = long(res.size()) - 1 == starter;
        if (adjacent || (last != 0 && last < u.ccc)) {
          uint32_t c = compose_pair(m, res[starter].cp, u.cp);
          if (c) {
            Unit& st = res[starter];
            st.cp = c;
            st.begin = std::min(st.begin, u.begin);
            st.end = std::max(st.end, u.end);
            continue;
          }
        }
      }
      if (u.ccc == 0) starter = long(res.size());
      last = u.ccc;
      res.push_back(u);
    }
    final_units = &res;
  }
  out.clear();
  src.clear();
  for (const Unit& u : *final_units) {
    size_t before = out.size();
    append_utf8(out, u.cp);
    for (size_t k = before; k < out.size(); ++k) src.emplace_back(u.begin, u.end);
  }
}

}  // namespace hs::tokenizer::unicode
