// Post-processors and decoders (see processors.h). Decoders work on the list of token strings as HF's
// decode_chain does; the final text is their concatenation.
#include "tokenizer/processors.h"

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace hs::tokenizer {

namespace {

// HF's process_offsets: trim the leading/trailing spaces of each token from its offsets.
void trim_offsets(Encoding& enc, bool add_prefix_space, const SpaceCounter& spaces) {
  for (size_t i = 0; i < enc.ids.size(); ++i) {
    auto [lead, trail] = spaces(enc.ids[i], enc.offsets[i]);
    auto& off = enc.offsets[i];
    if (lead > 0) {
      bool is_first = i == 0 || off.first == 0;
      if (is_first && add_prefix_space && lead == 1) lead = 0;
      off.first = std::min(off.first + lead, off.second);
    }
    if (trail > 0 && off.second >= trail) off.second = std::max(off.second - trail, off.first);
  }
}

void wrap(Encoding& enc, const std::vector<int32_t>& before, const std::vector<int32_t>& after,
          uint32_t text_len) {
  if (!before.empty()) {
    enc.ids.insert(enc.ids.begin(), before.begin(), before.end());
    enc.offsets.insert(enc.offsets.begin(), before.size(), {0u, 0u});
  }
  for (int32_t id : after) {
    enc.ids.push_back(id);
    enc.offsets.emplace_back(text_len, text_len);
  }
}

class Template final : public PostProcessor {
 public:
  explicit Template(const JsonRef& j) {
    JsonRef single = j["single"];
    JsonRef specials = j["special_tokens"];
    bool seen_a = false;
    for (size_t i = 0; i < single.size(); ++i) {
      JsonRef item = single.at(i);
      if (item.has("Sequence")) {
        std::string id = item["Sequence"]["id"].str();
        if (id != "A" || seen_a) item.fail("a single-sequence template must contain sequence A once");
        seen_a = true;
      } else if (item.has("SpecialToken")) {
        std::string name = item["SpecialToken"]["id"].str();
        if (!specials.has(name.c_str()))
          item.fail("special token '" + name + "' is not listed in post_processor.special_tokens");
        JsonRef ids = specials[name.c_str()]["ids"];
        auto& dst = seen_a ? after_ : before_;
        for (size_t k = 0; k < ids.size(); ++k) dst.push_back(int32_t(ids.at(k).integer()));
      } else {
        item.fail("expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
      }
    }
    if (!seen_a) single.fail("the single-sequence template has no sequence A");
  }
  void apply(Encoding& enc, bool add_special, uint32_t text_len, const SpaceCounter&) const override {
    if (add_special) wrap(enc, before_, after_, text_len);
  }
  std::pair<std::vector<int32_t>, std::vector<int32_t>> added_ids() const override {
    return {before_, after_};
  }

 private:
  std::vector<int32_t> before_, after_;
};

// RobertaProcessing and BertProcessing: <cls> A <sep>; Roberta may trim offsets first.
class ClsSep final : public PostProcessor {
 public:
  ClsSep(const JsonRef& j, bool roberta) {
    cls_ = int32_t(j["cls"].at(1).integer());
    sep_ = int32_t(j["sep"].at(1).integer());
    if (roberta) {
      trim_ = j.bool_or("trim_offsets", true);
      add_prefix_space_ = j.bool_or("add_prefix_space", true);
    }
  }
  void apply(Encoding& enc, bool add_special, uint32_t text_len, const SpaceCounter& spaces) const override {
    if (trim_) trim_offsets(enc, add_prefix_space_, spaces);
    if (add_special) wrap(enc, {cls_}, {sep_}, text_len);
  }
  std::pair<std::vector<int32_t>, std::vector<int32_t>> added_ids() const override {
    return {{cls_}, {sep_}};
  }

 private:
  int32_t cls_ = -1, sep_ = -1;
  bool trim_ = false, add_prefix_space_ = false;
};

class ByteLevelPost final : public PostProcessor {
 public:
  explicit ByteLevelPost(const JsonRef& j)
      : trim_(j.bool_or("trim_offsets", true)), add_prefix_space_(j.bool_or("add_prefix_space", true)) {}
  void apply(Encoding& enc, bool, uint32_t, const SpaceCounter& spaces) const override {
    if (trim_) trim_offsets(enc, add_prefix_space_, spaces);
  }
  std::pair<std::vector<int32_t>, std::vector<int32_t>> added_ids() const override { return {}; }

 private:
  bool trim_, add_prefix_space_;
};

class PostSequence final : public PostProcessor {
 public:
  explicit PostSequence(std::vector<std::unique_ptr<PostProcessor>> steps) : steps_(std::move(steps)) {}
  void apply(Encoding& enc, bool add_special, uint32_t text_len, const SpaceCounter& spaces) const override {
    for (const auto& s : steps_) s->apply(enc, add_special, text_len, spaces);
  }
  std::pair<std::vector<int32_t>, std::vector<int32_t>> added_ids() const override {
    std::pair<std::vector<int32_t>, std::vector<int32_t>> all;
    for (const auto& s : steps_) {
      auto [b, a] = s->added_ids();
      all.first.insert(all.first.begin(), b.begin(), b.end());
      all.second.insert(all.second.end(), a.begin(), a.end());
    }
    return all;
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> steps_;
};

// ---- decoders ----

class ByteLevelDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& t : tokens) {
      size_t before = bytes.size();
      bool all = true;
      const auto* u = reinterpret_cast<const unsigned char*>(t.data());
      for (size_t i = 0; i < t.size();) {
        int len;
        int b = byte_level::char_to_byte(unicode::decode_utf8(u + i, &len));
        if (b < 0) {
          all = false;
          break;
        }
        bytes.push_back(char(b));
        i += size_t(len);
      }
      if (!all) {  // a token that is not byte-level text (an added token) stands for its own bytes
        bytes.resize(before);
        bytes += t;
      }
    }
    tokens.assign(1, unicode::to_valid_utf8(bytes));
  }
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(std::string literal, std::unique_ptr<Regex> regex, std::string content)
      : literal_(std::move(literal)), regex_(std::move(regex)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::pair<uint32_t, uint32_t>> m;
    for (std::string& t : tokens) {
      m.clear();
      if (regex_) {
        regex_->find_all(t, m);
      } else if (!literal_.empty()) {
        for (size_t at = t.find(literal_); at != std::string::npos;
             at = t.find(literal_, at + literal_.size()))
          m.emplace_back(uint32_t(at), uint32_t(at + literal_.size()));
      }
      if (m.empty()) continue;
      std::string out;
      uint32_t prev = 0;
      for (const auto& [b, e] : m) {
        out.append(t, prev, b - prev);
        out += content_;
        prev = e;
      }
      out.append(t, prev, std::string::npos);
      t.swap(out);
    }
  }

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
  std::string content_;
};

class ByteFallbackDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (unicode::first_invalid_utf8(pending) == std::string_view::npos) {
        out.push_back(pending);
      } else {
        for (size_t i = 0; i < pending.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
      }
      pending.clear();
    };
    for (std::string& t : tokens) {
      int byte = parse(t);
      if (byte >= 0) {
        pending.push_back(char(byte));
        continue;
      }
      flush();
      out.push_back(std::move(t));
    }
    flush();
    tokens.swap(out);
  }

 private:
  static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  // "<0xAB>" -> 0xAB (Rust's u8::from_str_radix also takes a leading '+': "<0x+A>").
  static int parse(const std::string& t) {
    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
    if (t[3] == '+') {
      int v = hexval(t[4]);
      return v;
    }
    int hi = hexval(t[3]), lo = hexval(t[4]);
    if (hi < 0 || lo < 0) return -1;
    return hi * 16 + lo;
  }
};

class FuseDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

class StripDecoder final : public Decoder {
 public:
  StripDecoder(uint32_t content, size_t start, size_t stop) : content_(content), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) {
      // Work on characters, as HF does.
      std::vector<std::pair<size_t, uint32_t>> chars;  // byte offset, code point
      const auto* u = reinterpret_cast<const unsigned char*>(t.data());
      for (size_t i = 0; i < t.size();) {
        int len;
        chars.emplace_back(i, unicode::decode_utf8(u + i, &len));
        i += size_t(len);
      }
      size_t start_cut = 0;
      for (size_t i = 0; i < std::min(start_, chars.size()); ++i) {
        if (chars[i].second != content_) break;
        start_cut = i + 1;
      }
      size_t stop_cut = chars.size();
      for (size_t i = 0; i < stop_ && i < chars.size(); ++i) {
        size_t index = chars.size() - i - 1;
        if (chars[index].second != content_) break;
        stop_cut = index;
      }
      if (stop_cut < start_cut) stop_cut = start_cut;
      size_t b = start_cut < chars.size() ? chars[start_cut].first : t.size();
      size_t e = stop_cut < chars.size() ? chars[stop_cut].first : t.size();
      t = t.substr(b, e - b);
    }
  }

 private:
  uint32_t content_;
  size_t start_, stop_;
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string rep, bool strip_first) : rep_(std::move(rep)), strip_first_(strip_first) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      std::string out;
      size_t prev = 0;
      for (size_t at = t.find(rep_); at != std::string::npos; at = t.find(rep_, at + rep_.size())) {
        out.append(t, prev, at - prev);
        if (!(i == 0 && strip_first_)) out.push_back(' ');
        prev = at + rep_.size();
      }
      out.append(t, prev, std::string::npos);
      t.swap(out);
    }
  }

 private:
  std::string rep_;
  bool strip_first_;
};

class DecoderSequence final : public Decoder {
 public:
  explicit DecoderSequence(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& s : steps_) s->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

uint32_t one_char(const JsonRef& j) {
  std::string s = j.str();
  if (s.empty() || unicode::utf8_length(uint8_t(s[0])) != int(s.size())) j.fail("expected one character");
  int len;
  return unicode::decode_utf8(reinterpret_cast<const unsigned char*>(s.data()), &len);
}

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const JsonRef& j) {
  std::string type = j["type"].str();
  if (type == "TemplateProcessing") return std::make_unique<Template>(j);
  if (type == "RobertaProcessing") return std::make_unique<ClsSep>(j, true);
  if (type == "BertProcessing") return std::make_unique<ClsSep>(j, false);
  if (type == "ByteLevel") return std::make_unique<ByteLevelPost>(j);
  if (type == "Sequence") {
    JsonRef list = j["processors"];
    std::vector<std::unique_ptr<PostProcessor>> steps;
    for (size_t i = 0; i < list.size(); ++i) steps.push_back(make_post_processor(list.at(i)));
    return std::make_unique<PostSequence>(std::move(steps));
  }
  j["type"].fail(str("post-processor type '", type, "' is not supported"),
                 "supported: TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence");
}

std::unique_ptr<Decoder> make_decoder(const JsonRef& j) {
  std::string type = j["type"].str();
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip")
    return std::make_unique<StripDecoder>(one_char(j["content"]), size_t(j.int_or("start", 0)),
                                          size_t(j.int_or("stop", 0)));
  if (type == "Replace") {
    JsonRef pat = j["pattern"];
    std::string content = j["content"].str();
    if (pat.has("String")) return std::make_unique<ReplaceDecoder>(pat["String"].str(), nullptr, content);
    if (pat.has("Regex")) {
      auto re = std::make_unique<Regex>(Regex::compile(pat["Regex"].str(), pat["Regex"].where()));
      return std::make_unique<ReplaceDecoder>("", std::move(re), content);
    }
    pat.fail("expected {\"String\": ...} or {\"Regex\": ...}");
  }
  if (type == "Metaspace") {
    one_char(j["replacement"]);
    bool never = j.has("prepend_scheme") ? j["prepend_scheme"].str() == "never" : false;
    if (j.has("add_prefix_space") && !j["add_prefix_space"].boolean()) never = true;
    return std::make_unique<MetaspaceDecoder>(j["replacement"].str(), !never);
  }
  if (type == "Sequence") {
    JsonRef list = j["decoders"];
    std::vector<std::unique_ptr<Decoder>> steps;
    for (size_t i = 0; i < list.size(); ++i) steps.push_back(make_decoder(list.at(i)));
    return std::make_unique<DecoderSequence>(std::move(steps));
  }
  j["type"].fail(str("decoder type '", type, "' is not supported"),
                 "supported decoders: ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence");
}

}  // namespace hs::tokenizer
