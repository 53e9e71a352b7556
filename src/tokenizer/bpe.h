// The BPE model of HF tokenizers, exact: a word starts as one symbol per character (per byte after
// ByteLevel), unknown characters become <0xXX> byte tokens (byte_fallback) or the unk token (fused
// when fuse_unk), then the pair of lowest merge rank (leftmost on ties) is merged until none is left,
// through a priority queue over a linked list of symbols. ignore_merges looks the whole word up first.
// A word cache (owned by the caller, so that concurrent encodes need no lock) skips repeated words.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/json_reader.h"
#include "tokenizer/string_map.h"

namespace hs::tokenizer {

struct BpeToken {
  int32_t id;
  uint32_t len;  // bytes of the word this token covers
};

// Words seen before and their tokens. Bounded: once full it stops growing (as HF's cache does).
class BpeCache {
 public:
  explicit BpeCache(size_t capacity = 1 << 17) : capacity_(capacity) {}
  const BpeToken* find(std::string_view word, uint32_t* count) const;
  void insert(std::string_view word, const BpeToken* tokens, uint32_t count);
  void clear();

 private:
  size_t capacity_;
  StringMap<std::pair<uint32_t, uint32_t>> map_;  // word -> (offset into pool_, count)
  std::vector<BpeToken> pool_;
};

class Bpe {
 public:
  // `model` is tokenizer.json's "model" object. `byte_level`: the pre-tokenizer hands raw bytes, so the
  // vocabulary is looked up in byte form (the GPT-2 byte-to-character map undone).
  // `data` holds model.vocab / model.merges if the parser captured them (parse_tokenizer_json); what it
  // did not capture is read from the DOM.
  void load(const JsonRef& model, bool byte_level, ModelData&& data);

  // Appends the tokens of `word` (not empty) to `out`. `cache` may be null.
  void tokenize(std::string_view word, std::vector<BpeToken>& out, BpeCache* cache) const;

  int32_t vocab_size() const { return int32_t(id_to_token_.size()); }  // max id + 1
  size_t vocab_count() const { return vocab_.size(); }                 // entries (HF's get_vocab_size)
  std::optional<int32_t> token_to_id(std::string_view token) const;
  // The vocabulary string of an id (as in tokenizer.json), or nullptr.
  const std::string* id_to_token(int32_t id) const;
  // Raw bytes of an id in byte-level mode (the token string mapped back to bytes).
  std::string_view id_to_bytes(int32_t id) const;
  bool byte_level() const { return byte_level_; }
  const std::optional<std::string>& unk_token() const { return unk_token_; }

 private:
  struct MergeMap {
    std::vector<uint64_t> keys;
    std::vector<std::pair<uint32_t, int32_t>> values;  // rank, new id
    uint64_t mask = 0;
    void reserve(size_t n);
    void insert(int32_t a, int32_t b, uint32_t rank, int32_t id);
    const std::pair<uint32_t, int32_t>* find(int32_t a, int32_t b) const;
  };
  void merge_word(std::string_view word, std::vector<BpeToken>& out) const;
  int32_t unk_id() const;

  StringMap<int32_t> vocab_;       // as written in the file
  StringMap<int32_t> byte_vocab_;  // byte-level: the same tokens as raw bytes
  std::vector<std::string> id_to_token_;
  std::vector<std::string> id_to_bytes_;
  MergeMap merges_;
  int32_t byte_ids_[256];  // byte-level: the id of each single byte (-1 if absent)
  int32_t fallback_[256];  // byte_fallback: the id of <0xXX> (-1 if absent)
  std::optional<std::string> unk_token_;
  std::string prefix_, suffix_;  // continuing_subword_prefix, end_of_word_suffix
  std::string where_;
  bool byte_level_ = false, fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
};

}  // namespace hs::tokenizer
