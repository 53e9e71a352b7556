// BPE model: loading (vocab, merges in both the "a b" and ["a", "b"] forms) and the merge loop of HF's
// Word::merge_all, with a flat open-addressing map from id pairs to (rank, merged id).
#include "tokenizer/bpe.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "core/error.h"
#include "core/log.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/unicode.h"

namespace hs::tokenizer {

// ---- cache ----

const BpeToken* BpeCache::find(std::string_view word, uint32_t* count) const {
  const auto* hit = map_.find(word);
  if (!hit) return nullptr;
  *count = hit->second;
  return pool_.data() + hit->first;
}

void BpeCache::insert(std::string_view word, const BpeToken* tokens, uint32_t count) {
  if (map_.size() >= capacity_) return;
  map_.insert(word, {uint32_t(pool_.size()), count});
  pool_.insert(pool_.end(), tokens, tokens + count);
}

void BpeCache::clear() {
  map_.clear();
  pool_.clear();
}

// ---- merges ----

namespace {
constexpr uint64_t kEmpty = ~uint64_t(0);
inline uint64_t pair_key(int32_t a, int32_t b) { return uint64_t(uint32_t(a)) << 32 | uint32_t(b); }
inline uint64_t mix(uint64_t k) {
  k ^= k >> 33;
  k *= 0xFF51AFD7ED558CCDull;
  k ^= k >> 33;
  return k;
}
}  // namespace

void Bpe::MergeMap::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  keys.assign(cap, kEmpty);
  values.assign(cap, {0, 0});
  mask = cap - 1;
}

void Bpe::MergeMap::insert(int32_t a, int32_t b, uint32_t rank, int32_t id) {
  uint64_t k = pair_key(a, b);
  for (uint64_t i = mix(k) & mask;; i = (i + 1) & mask) {
    if (keys[i] == kEmpty || keys[i] == k) {  // a repeated pair: the later rank wins, as in HF
      keys[i] = k;
      values[i] = {rank, id};
      return;
    }
  }
}

const std::pair<uint32_t, int32_t>* Bpe::MergeMap::find(int32_t a, int32_t b) const {
  uint64_t k = pair_key(a, b);
  for (uint64_t i = mix(k) & mask;; i = (i + 1) & mask) {
    if (keys[i] == k) return &values[i];
    if (keys[i] == kEmpty) return nullptr;
  }
}

// ---- loading ----

namespace {

// model.vocab / model.merges from the DOM, for when the parser did not capture them.
void from_dom(const JsonRef& model, ModelData& data) {
  if (!data.vocab_captured) {
    JsonRef vocab = model["vocab"];
    if (!vocab.is_object())
      vocab.fail(hs::str("expected an object of token -> id, got ", JsonRef::type_name(vocab.raw())));
    for (auto it = vocab.raw().begin(); it != vocab.raw().end(); ++it) {
      const auto& v = it.value();
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
        vocab.fail(hs::str("token '", it.key(), "' has id ", v.dump(), "; expected a non-negative integer"));
      data.vocab.emplace_back(it.key(), v.get<int64_t>());
    }
  }
  if (!data.merges_captured) {
    JsonRef merges = model["merges"];
    if (!merges.is_array()) merges.fail(hs::str("expected an array, got ", JsonRef::type_name(merges.raw())));
    for (size_t i = 0; i < merges.size(); ++i) {
      const auto& m = merges.raw()[i];
      if (m.is_string()) {
        data.merges.push_back({m.get<std::string>(), {}, true});
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        data.merges.push_back({m[0].get<std::string>(), m[1].get<std::string>(), false});
      } else {
        merges.at(i).fail(hs::str("expected \"a b\" or [\"a\", \"b\"], got ", m.dump()));
      }
    }
  }
}

}  // namespace

void Bpe::load(const JsonRef& model, bool byte_level, ModelData&& data) {
  where_ = model.where();
  byte_level_ = byte_level;
  if (!data.error.empty()) throw Error(data.error).at(model.where() + data.error_at.substr(5));
  if (model.has("dropout")) {
    double d = model["dropout"].number();
    if (d != 0.0)
      model["dropout"].fail("BPE dropout is not supported (it makes tokenization random)",
                            "set \"dropout\": null in tokenizer.json for deterministic training data");
  }
  unk_token_ = model.opt_str("unk_token");
  prefix_ = model.str_or("continuing_subword_prefix", "");
  suffix_ = model.str_or("end_of_word_suffix", "");
  fuse_unk_ = model.bool_or("fuse_unk", false);
  byte_fallback_ = model.bool_or("byte_fallback", false);
  ignore_merges_ = model.bool_or("ignore_merges", false);
  if (byte_level_ && (!prefix_.empty() || !suffix_.empty()))
    model.fail(
        "continuing_subword_prefix / end_of_word_suffix with a ByteLevel pre-tokenizer is not supported");
  // Present (the parser leaves an empty placeholder for what it captured), of the right type.
  if (data.vocab_captured) (void)model["vocab"];
  if (data.merges_captured) (void)model["merges"];
  from_dom(model, data);

  vocab_ = StringMap<int32_t>();
  vocab_.reserve(data.vocab.size());
  int64_t max_id = -1;
  const std::string* max_tok = nullptr;
  for (const auto& [tok, id] : data.vocab) {
    vocab_.insert(tok, int32_t(id));
    if (id > max_id) {
      max_id = id;
      max_tok = &tok;
    }
  }
  // Tables are indexed by id: an id far beyond the number of entries would cost memory for every id up
  // to it (one id of 50M in a 10-entry vocab: gigabytes). Real vocabularies are dense.
  const int64_t entries = int64_t(data.vocab.size());
  if (max_id >= 2 * entries + 1024)
    model["vocab"].fail(
        str("token '", *max_tok, "' has id ", max_id, ", far beyond the vocabulary's ", entries,
            " entries (ids must be about 0..", entries - 1, ")"),
        "the tokenizer.json is damaged or not a real tokenizer: ids of model.vocab must be dense");
  id_to_token_.assign(size_t(max_id + 1), std::string());
  vocab_.for_each([&](std::string_view tok, int32_t id) { id_to_token_[size_t(id)] = tok; });
  data.vocab.clear();
  data.vocab.shrink_to_fit();

  std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
  std::fill(std::begin(fallback_), std::end(fallback_), -1);
  byte_vocab_ = StringMap<int32_t>();
  id_to_bytes_.clear();
  if (byte_level_) {
    id_to_bytes_.assign(id_to_token_.size(), std::string());
    byte_vocab_.reserve(vocab_.size());
    vocab_.for_each([&](std::string_view tok, int32_t id) {
      std::string bytes;
      const auto* u = reinterpret_cast<const unsigned char*>(tok.data());
      for (size_t i = 0; i < tok.size();) {
        int len;
        int b = byte_level::char_to_byte(unicode::decode_utf8(u + i, &len));
        if (b < 0) return;  // not reachable from byte-level input
        bytes.push_back(char(b));
        i += size_t(len);
      }
      byte_vocab_.insert(bytes, id);
      id_to_bytes_[size_t(id)] = std::move(bytes);
    });
    for (int b = 0; b < 256; ++b) {
      char c = char(b);
      if (const int32_t* id = byte_vocab_.find(std::string_view(&c, 1))) byte_ids_[b] = *id;
    }
  }
  if (byte_fallback_) {
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      if (const int32_t* id = vocab_.find(std::string_view(name))) fallback_[b] = *id;
    }
  }
  if (unk_token_ && !vocab_.contains(*unk_token_))
    log::warn(where_, ": unk_token '", *unk_token_,
              "' is not in the vocabulary; unknown characters will fail");

  auto fail_at = [&](size_t i, const std::string& what, const std::string& hint = "") {
    Error e(what);
    e.at(hs::str(where_, ".merges[", i, "]"));
    if (!hint.empty()) e.hint(hint);
    throw e;
  };
  merges_.reserve(data.merges.size());
  std::string merged;
  for (size_t i = 0; i < data.merges.size(); ++i) {
    const ModelData::Merge& m = data.merges[i];
    std::string_view a = m.a, b = m.b;
    if (m.legacy) {
      const std::string& s = m.a;
      size_t sp = s.find(' ');
      if (sp == std::string::npos) fail_at(i, "a merge must be two tokens separated by one space");
      if (s.find(' ', sp + 1) != std::string::npos) {
        // Tokens with spaces in the legacy "a b" form (HF tokenizers refuses these files): take the one
        // split whose halves and their concatenation are all in the vocabulary.
        size_t found = std::string::npos;
        int count = 0;
        for (size_t at = s.find(' '); at != std::string::npos; at = s.find(' ', at + 1)) {
          std::string_view x = std::string_view(s).substr(0, at), y = std::string_view(s).substr(at + 1);
          std::string_view tail = y;
          if (!prefix_.empty() && tail.size() >= prefix_.size()) tail.remove_prefix(prefix_.size());
          if (vocab_.contains(x) && vocab_.contains(y) &&
              vocab_.contains(std::string(x) + std::string(tail))) {
            found = at;
            ++count;
          }
        }
        if (count != 1)
          fail_at(i,
                  hs::str("merge '", s, "' has several spaces and ", count == 0 ? "no" : "more than one",
                          " way to split it into two vocabulary tokens"),
                  "write the merges as [\"a\", \"b\"] pairs (newer HF tokenizers save them so)");
        sp = found;
      }
      a = std::string_view(s).substr(0, sp);
      b = std::string_view(s).substr(sp + 1);
    }
    const int32_t *ia = vocab_.find(a), *ib = vocab_.find(b);
    if (!ia || !ib) fail_at(i, str("merge token '", std::string(!ia ? a : b), "' is not in model.vocab"));
    merged.assign(a);
    std::string_view tail = b;
    if (!prefix_.empty() && tail.size() >= prefix_.size()) tail.remove_prefix(prefix_.size());
    merged.append(tail);
    const int32_t* in = vocab_.find(merged);
    if (!in) fail_at(i, str("merged token '", merged, "' is not in model.vocab"));
    merges_.insert(*ia, *ib, uint32_t(i), *in);
  }
}

std::optional<int32_t> Bpe::token_to_id(std::string_view token) const {
  const int32_t* id = vocab_.find(token);
  if (!id) return std::nullopt;
  return *id;
}

const std::string* Bpe::id_to_token(int32_t id) const {
  if (id < 0 || size_t(id) >= id_to_token_.size()) return nullptr;
  const std::string& s = id_to_token_[size_t(id)];
  if (s.empty() && !vocab_.contains(s)) return nullptr;
  return &s;
}

std::string_view Bpe::id_to_bytes(int32_t id) const {
  if (id < 0 || size_t(id) >= id_to_bytes_.size()) return {};
  return id_to_bytes_[size_t(id)];
}

int32_t Bpe::unk_id() const {
  const int32_t* id = vocab_.find(*unk_token_);
  if (!id)
    throw Error(str("unk_token '", *unk_token_,
                    "' is not in the vocabulary, and the input has a character outside it"))
        .at(where_ + ".unk_token")
        .hint("fix model.unk_token in tokenizer.json");
  return *id;
}

// ---- tokenizing ----

void Bpe::tokenize(std::string_view word, std::vector<BpeToken>& out, BpeCache* cache) const {
  if (ignore_merges_) {
    if (const int32_t* id = (byte_level_ ? byte_vocab_ : vocab_).find(word)) {
      out.push_back({*id, uint32_t(word.size())});
      return;
    }
  }
  if (cache) {
    uint32_t count;
    if (const BpeToken* hit = cache->find(word, &count)) {
      out.insert(out.end(), hit, hit + count);
      return;
    }
  }
  size_t before = out.size();
  merge_word(word, out);
  if (cache && word.size() < 256) cache->insert(word, out.data() + before, uint32_t(out.size() - before));
}

namespace {

struct Symbol {
  int32_t id;
  int32_t prev, next;
  uint32_t len;
};

struct Merge {
  uint32_t rank, pos;
  int32_t id;
  // std::push_heap builds a max-heap: "less" means lower priority, i.e. higher rank, then higher pos.
  bool operator<(const Merge& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

}  // namespace

void Bpe::merge_word(std::string_view word, std::vector<BpeToken>& out) const {
  thread_local std::vector<Symbol> syms;
  thread_local std::vector<Merge> heap;
  thread_local std::string key;
  syms.clear();
  heap.clear();
  auto add = [&](int32_t id, uint32_t len) {
    int32_t i = int32_t(syms.size());
    syms.push_back({id, i - 1, -1, len});
    if (i > 0) syms[size_t(i - 1)].next = i;
  };
  bool have_unk = false;
  int32_t unk = -1;
  uint32_t unk_len = 0;
  auto unknown = [&](uint32_t len) {
    if (!unk_token_) {
      static std::atomic<bool> warned{false};
      if (!warned.exchange(true)) {
        log::warn(where_,
                  ": a character is not in the vocabulary and there is no unk_token or byte fallback; "
                  "it is dropped (as HF tokenizers does)");
      }
      return;
    }
    if (have_unk && fuse_unk_) {
      unk_len += len;
    } else {
      if (have_unk) add(unk, unk_len);
      unk = unk_id();
      unk_len = len;
      have_unk = true;
    }
  };
  auto flush_unk = [&] {
    if (have_unk) add(unk, unk_len);
    have_unk = false;
  };

  const auto* u = reinterpret_cast<const unsigned char*>(word.data());
  if (byte_level_) {
    for (size_t i = 0; i < word.size(); ++i) {
      int32_t id = byte_ids_[u[i]];
      if (id >= 0) {
        flush_unk();
        add(id, 1);
      } else {
        unknown(1);
      }
    }
  } else {
    const bool affixes = !prefix_.empty() || !suffix_.empty();
    for (size_t i = 0; i < word.size();) {
      int len = unicode::utf8_length(u[i]);
      std::string_view ch = word.substr(i, size_t(len));
      std::string_view s = ch;
      if (affixes) {
        key.clear();
        if (i > 0) key += prefix_;
        key += ch;
        if (i + size_t(len) >= word.size()) key += suffix_;
        s = key;
      }
      i += size_t(len);
      if (const int32_t* id = vocab_.find(s)) {
        flush_unk();
        add(*id, uint32_t(len));
        continue;
      }
      if (byte_fallback_) {
        bool all = true;
        for (unsigned char c : s) all = all && fallback_[c] >= 0;
        if (all) {
          // One token per byte, each of length 1 (affix bytes included, as in HF, which also does not
          // flush a pending unk token here).
          for (unsigned char c : s) add(fallback_[c], 1);
          continue;
        }
      }
      unknown(uint32_t(len));
    }
  }
  flush_unk();

  // Merge loop (HF Word::merge_all without dropout).
  for (size_t i = 0; i + 1 < syms.size(); ++i)
    if (auto m = merges_.find(syms[i].id, syms[i + 1].id)) heap.push_back({m->first, uint32_t(i), m->second});
  std::make_heap(heap.begin(), heap.end());
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    Merge top = heap.back();
    heap.pop_back();
    Symbol& cur = syms[top.pos];
    if (cur.len == 0 || cur.next == -1) continue;
    size_t next_pos = size_t(cur.next);
    Symbol right = syms[next_pos];
    auto m = merges_.find(cur.id, right.id);
    if (!m || m->second != top.id) continue;  // an expired entry
    cur.id = top.id;
    cur.len += right.len;
    cur.next = right.next;
    syms[next_pos].len = 0;
    if (right.next >= 0 && size_t(right.next) < syms.size()) syms[size_t(right.next)].prev = int32_t(top.pos);
    if (cur.prev >= 0) {
      if (auto pm = merges_.find(syms[size_t(cur.prev)].id, cur.id)) {
        heap.push_back({pm->first, uint32_t(cur.prev), pm->second});
        std::push_heap(heap.begin(), heap.end());
      }
    }
    if (cur.next >= 0 && size_t(cur.next) < syms.size()) {
      if (auto nm = merges_.find(cur.id, syms[size_t(cur.next)].id)) {
        heap.push_back({nm->first, top.pos, nm->second});
        std::push_heap(heap.begin(), heap.end());
      }
    }
  }
  for (const Symbol& s : syms)
    if (s.len != 0) out.push_back({s.id, s.len});
}

}  // namespace hs::tokenizer
