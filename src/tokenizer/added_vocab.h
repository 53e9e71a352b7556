// Added tokens (special or not), matched before the model as HF's AddedVocabulary does: a first pass
// over the raw input finds the tokens with normalized=false, a second pass over each normalized piece
// finds the normalized=true ones (whose contents were normalized with the same normalizer). Matching
// is leftmost-longest over a byte trie; single_word, lstrip and rstrip apply as in HF (\w and
// whitespace from Rust's regex crate, i.e. Alphabetic/M/Nd/Pc/Join_Control and White_Space).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/pipeline.h"

namespace hs::tokenizer {

struct AddedToken {
  std::string content;
  std::string text;  // what the token decodes to: the normalized content for normalized tokens (as HF)
  int32_t id = -1;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = true;
};

class AddedVocab {
 public:
  // `normalizer` (may be null) normalizes the contents of normalized tokens for the second pass.
  void build(std::vector<AddedToken> tokens, const Normalizer* normalizer);

  // Splits the non-added pieces of `pieces` on the raw (normalized=false) or normalized tokens.
  void split(Work& w, std::vector<Piece>& pieces, bool normalized_pass) const;
  bool has_normalized() const { return !normalized_.nodes.empty(); }
  bool has_raw() const { return !raw_.nodes.empty(); }

  const std::vector<AddedToken>& tokens() const { return tokens_; }
  const AddedToken* by_id(int32_t id) const;
  std::optional<int32_t> by_content(std::string_view content) const;
  bool is_special_content(std::string_view content) const;

 private:
  struct Trie {
    struct Node {
      std::vector<std::pair<uint8_t, uint32_t>> kids;  // sorted by byte
      int32_t token = -1;                              // index into tokens_
    };
    std::vector<Node> nodes;  // [0] is the root
    bool first[256] = {};     // bytes that can start a match
    void add(std::string_view key, int32_t token);
  };
  void split_one(const Trie& trie, Work& w, const Piece& p, std::vector<Piece>& out) const;

  std::vector<AddedToken> tokens_;
  std::unordered_map<std::string, int32_t> by_content_;  // content -> id
  std::unordered_map<int32_t, size_t> by_id_;            // id -> index into tokens_
  Trie raw_, normalized_;
};

}  // namespace hs::tokenizer
