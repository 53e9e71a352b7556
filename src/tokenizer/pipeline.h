// The text side of the encode pipeline, shared by normalizers, pre-tokenizers and added tokens.
//
// An NText is one normalized text: either a view of the input (identity alignment from `base`) or
// owned bytes with, for every byte, the input byte range it came from. A Piece is a byte range of an
// NText, or an added token already resolved to an id. Normalizers and pre-tokenizers turn pieces into
// pieces; only the steps that change bytes (NFC, Prepend, Replace, Metaspace, ByteLevel's prefix space)
// create owned texts, so ASCII input through Qwen's pipeline never copies or allocates per piece.
// Offsets of a token are the union of the input ranges of its bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/json_reader.h"

namespace hs::tokenizer {

struct Span {
  uint32_t begin = 0, end = 0;
};

struct NText {
  std::string_view ext;     // the bytes when !owned (a view of the input)
  std::string own;          // the bytes when owned
  std::vector<Span> align;  // owned: input range of every byte
  uint32_t base = 0;        // !owned: input offset of ext[0]
  bool owned = false;

  std::string_view str() const { return owned ? std::string_view(own) : ext; }
  // Input range covered by bytes [b, e) (e > b).
  Span orig(uint32_t b, uint32_t e) const {
    if (!owned) return {base + b, base + e};
    Span s = align[b];
    for (uint32_t i = b + 1; i < e; ++i) {
      if (align[i].begin < s.begin) s.begin = align[i].begin;
      if (align[i].end > s.end) s.end = align[i].end;
    }
    return s;
  }
  Span orig_byte(uint32_t b) const { return owned ? align[b] : Span{base + b, base + b + 1}; }
};

struct Piece {
  uint32_t text = 0;  // index into Work::texts
  uint32_t b = 0, e = 0;
  int32_t id = -1;  // >= 0: an added token (b, e give its range in the text)
};

// Scratch space of one encode call, reused between calls.
struct Work {
  std::vector<NText> texts;
  size_t used = 0;
  std::vector<Piece> pieces, next;
  std::vector<std::pair<uint32_t, uint32_t>> matches, src;
  std::vector<std::pair<Span, bool>> parts;  // (range, is_match) of a split
  std::string tmp;

  void reset() { used = 0; }
  uint32_t view(std::string_view s, uint32_t base) {
    NText& t = fresh();
    t.ext = s;
    t.base = base;
    t.owned = false;
    return uint32_t(used - 1);
  }
  // A new owned text (empty bytes and alignment).
  uint32_t owned() {
    NText& t = fresh();
    t.own.clear();
    t.align.clear();
    t.owned = true;
    return uint32_t(used - 1);
  }
  std::string_view str(const Piece& p) const { return texts[p.text].str().substr(p.b, p.e - p.b); }
  // Appends bytes [b, e) of text `from` (with their alignment) to owned text `to`.
  void append(uint32_t to, uint32_t from, uint32_t b, uint32_t e) {
    NText& dst = texts[to];
    const NText& src_text = texts[from];
    dst.own.append(src_text.str().substr(b, e - b));
    for (uint32_t i = b; i < e; ++i) dst.align.push_back(src_text.orig_byte(i));
  }
  // Appends `bytes` to owned text `to`, every byte aligned to `span`.
  void append(uint32_t to, std::string_view bytes, Span span) {
    NText& dst = texts[to];
    dst.own.append(bytes);
    dst.align.insert(dst.align.end(), bytes.size(), span);
  }

 private:
  NText& fresh() {
    if (used == texts.size()) texts.emplace_back();
    return texts[used++];
  }
};

// Normalizers work on one piece (a non-added piece of the input) and may replace it.
class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void apply(Work& w, Piece& p) const = 0;
};

// Pre-tokenizers split every non-added piece of `pieces` (and may change bytes).
class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void apply(Work& w, std::vector<Piece>& pieces) const = 0;
  // True when this step hands raw bytes to the model (ByteLevel); false by default.
  virtual bool byte_level() const { return false; }
};

// Factories: throw hs::Error naming the JSON key for unknown types and unsupported options.
std::unique_ptr<Normalizer> make_normalizer(const JsonRef& j);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const JsonRef& j);

// The normalized form of a string (for the contents of normalized added tokens).
std::string normalize_string(const Normalizer& n, std::string_view s);

}  // namespace hs::tokenizer
