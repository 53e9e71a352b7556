// Trie matching of added tokens with HF's flag semantics (see added_vocab.h). The scan skips bytes that
// cannot start a token with one table lookup, so text without added tokens costs one pass.
#include "tokenizer/added_vocab.h"

#include <algorithm>

#include "tokenizer/unicode.h"

namespace hs::tokenizer {

void AddedVocab::Trie::add(std::string_view key, int32_t token) {
  if (nodes.empty()) nodes.emplace_back();
  uint32_t node = 0;
  for (unsigned char c : key) {
    auto& kids = nodes[node].kids;
    auto it = std::lower_bound(kids.begin(), kids.end(), std::make_pair(c, uint32_t(0)),
                               [](const auto& a, const auto& b) { return a.first < b.first; });
    if (it != kids.end() && it->first == c) {
      node = it->second;
      continue;
    }
    uint32_t child = uint32_t(nodes.size());
    kids.insert(it, {c, child});
    nodes.emplace_back();
    node = child;
  }
  nodes[node].token = token;
  first[uint8_t(key[0])] = true;
}

void AddedVocab::build(std::vector<AddedToken> tokens, const Normalizer* normalizer) {
  // Same content twice: one id, the last flags win (as in HF's add_tokens).
  tokens_.clear();
  by_content_.clear();
  by_id_.clear();
  for (auto& t : tokens) {
    if (t.content.empty()) continue;
    auto it = by_content_.find(t.content);
    if (it != by_content_.end()) {
      tokens_[by_id_[it->second]] = t;
      continue;
    }
    by_content_[t.content] = t.id;
    by_id_[t.id] = tokens_.size();
    tokens_.push_back(std::move(t));
  }
  raw_ = Trie{};
  normalized_ = Trie{};
  for (size_t i = 0; i < tokens_.size(); ++i) {
    AddedToken& t = tokens_[i];
    if (!t.normalized) {
      t.text = t.content;
      raw_.add(t.content, int32_t(i));
    } else {
      t.text = normalizer ? normalize_string(*normalizer, t.content) : t.content;
      if (!t.text.empty()) normalized_.add(t.text, int32_t(i));
    }
  }
}

const AddedToken* AddedVocab::by_id(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

std::optional<int32_t> AddedVocab::by_content(std::string_view content) const {
  auto it = by_content_.find(std::string(content));
  if (it == by_content_.end()) return std::nullopt;
  return it->second;
}

bool AddedVocab::is_special_content(std::string_view content) const {
  auto id = by_content(content);
  if (!id) return false;
  const AddedToken* t = by_id(*id);
  return t && t->special;
}

namespace {

// Code point that ends at byte `end` (exclusive) of s.
uint32_t char_before(std::string_view s, size_t end) {
  size_t q = end - 1;
  while (q > 0 && (uint8_t(s[q]) & 0xC0) == 0x80) --q;
  int len;
  return unicode::decode_utf8(reinterpret_cast<const unsigned char*>(s.data()) + q, &len);
}

}  // namespace

void AddedVocab::split_one(const Trie& trie, Work& w, const Piece& p, std::vector<Piece>& out) const {
  std::string_view s = w.str(p);
  const auto* u = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t start_offset = 0, pos = 0;
  while (pos < n) {
    if (!trie.first[u[pos]]) {
      ++pos;
      continue;
    }
    uint32_t node = 0;
    int32_t best = -1;
    size_t best_end = 0, j = pos;
    while (j < n) {
      const auto& kids = trie.nodes[node].kids;
      auto it = std::lower_bound(kids.begin(), kids.end(), std::make_pair(u[j], uint32_t(0)),
                                 [](const auto& a, const auto& b) { return a.first < b.first; });
      if (it == kids.end() || it->first != u[j]) break;
      node = it->second;
      ++j;
      if (trie.nodes[node].token >= 0) {
        best = trie.nodes[node].token;
        best_end = j;
      }
    }
    if (best < 0) {
      ++pos;
      continue;
    }
    const AddedToken& t = tokens_[size_t(best)];
    size_t start = pos, stop = best_end;
    pos = best_end;  // the scan goes on after the match itself, as HF's find_iter does
    if (t.single_word) {
      int len;
      bool start_space = start == 0 || !unicode::is_word(char_before(s, start));
      bool stop_space = stop == n || !unicode::is_word(unicode::decode_utf8(u + stop, &len));
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) {
      size_t b = start;
      while (b > 0) {
        size_t q = b - 1;
        while (q > 0 && (u[q] & 0xC0) == 0x80) --q;
        int len;
        if (!unicode::is_white(unicode::decode_utf8(u + q, &len))) break;
        b = q;
      }
      start = std::max(b, start_offset);
    }
    if (t.rstrip) {
      while (stop < n) {
        int len;
        if (!unicode::is_white(unicode::decode_utf8(u + stop, &len))) break;
        stop += size_t(len);
      }
    }
    start = std::max(start, start_offset);
    if (start_offset < start)
      out.push_back(Piece{p.text, p.b + uint32_t(start_offset), p.b + uint32_t(start)});
    out.push_back(Piece{p.text, p.b + uint32_t(start), p.b + uint32_t(stop), t.id});
    start_offset = stop;
    pos = std::max(pos, start_offset);
  }
  if (start_offset < n) out.push_back(Piece{p.text, p.b + uint32_t(start_offset), p.e});
}

void AddedVocab::split(Work& w, std::vector<Piece>& pieces, bool normalized_pass) const {
  const Trie& trie = normalized_pass ? normalized_ : raw_;
  if (trie.nodes.empty()) return;
  auto& out = w.next;
  out.clear();
  for (const Piece& p : pieces) {
    if (p.id >= 0)
      out.push_back(p);
    else
      split_one(trie, w, p, out);
  }
  pieces.swap(out);
}

}  // namespace hs::tokenizer
