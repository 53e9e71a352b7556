// Normalizers of HF tokenizer.json: NFC, NFD, Prepend, Replace (string or regex), Strip and Sequence.
// Each keeps the per-byte alignment to the input: NFC maps every output byte to the input characters
// it was composed from; Prepend's bytes map to the first character; Replace's bytes to what they
// replace. NFKC/NFKD, Lowercase, BertNormalizer, StripAccents, Nmt and Precompiled are rejected with
// an error naming the key (none of the supported model families uses them).
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace hs::tokenizer {

namespace {

class Unicode final : public Normalizer {
 public:
  explicit Unicode(bool compose) : compose_(compose) {}
  void apply(Work& w, Piece& p) const override {
    std::string_view s = w.str(p);
    if (compose_ && unicode::is_nfc_quick(s)) return;
    std::string out;
    unicode::normalize(s, compose_, out, w.src);
    if (out == s) return;
    uint32_t t = w.owned();
    NText& dst = w.texts[t];
    dst.own = std::move(out);
    dst.align.reserve(dst.own.size());
    const NText& src_text = w.texts[p.text];
    for (const auto& [b, e] : w.src) dst.align.push_back(src_text.orig(p.b + b, p.b + e));
    p = Piece{t, 0, uint32_t(dst.own.size())};
  }

 private:
  bool compose_;
};

class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string s) : s_(std::move(s)) {}
  void apply(Work& w, Piece& p) const override {
    if (p.e == p.b || s_.empty()) return;
    uint32_t t = w.owned();
    uint32_t first = uint32_t(unicode::utf8_length(uint8_t(w.texts[p.text].str()[p.b])));
    w.append(t, s_, w.texts[p.text].orig(p.b, p.b + first));
    w.append(t, p.text, p.b, p.e);
    p = Piece{t, 0, uint32_t(w.texts[t].own.size())};
  }

 private:
  std::string s_;
};

class Replace final : public Normalizer {
 public:
  Replace(std::string literal, std::unique_ptr<Regex> regex, std::string content)
      : literal_(std::move(literal)), regex_(std::move(regex)), content_(std::move(content)) {}
  void apply(Work& w, Piece& p) const override {
    std::string_view s = w.str(p);
    auto& m = w.matches;
    m.clear();
    if (regex_) {
      regex_->find_all(s, m);
    } else if (!literal_.empty()) {
      for (size_t at = s.find(literal_); at != std::string_view::npos;
           at = s.find(literal_, at + literal_.size()))
        m.emplace_back(uint32_t(at), uint32_t(at + literal_.size()));
    }
    if (m.empty()) return;
    uint32_t t = w.owned();
    uint32_t prev = 0;
    for (const auto& [b, e] : m) {
      w.append(t, p.text, p.b + prev, p.b + b);
      if (e > b) w.append(t, content_, w.texts[p.text].orig(p.b + b, p.b + e));
      prev = e;
    }
    w.append(t, p.text, p.b + prev, p.e);
    p = Piece{t, 0, uint32_t(w.texts[t].own.size())};
  }

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
  std::string content_;
};

class Strip final : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void apply(Work& w, Piece& p) const override {
    std::string_view s = w.str(p);
    const auto* u = reinterpret_cast<const unsigned char*>(s.data());
    size_t b = 0, e = s.size();
    if (left_) {
      while (b < e) {
        int len;
        uint32_t cp = unicode::decode_utf8(u + b, &len);
        if (!unicode::is_white(cp)) break;
        b += size_t(len);
      }
    }
    if (right_) {
      while (e > b) {
        size_t q = e - 1;
        while (q > b && (u[q] & 0xC0) == 0x80) --q;
        int len;
        if (!unicode::is_white(unicode::decode_utf8(u + q, &len))) break;
        e = q;
      }
    }
    p.e = p.b + uint32_t(e);
    p.b = p.b + uint32_t(b);
  }

 private:
  bool left_, right_;
};

class Sequence final : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
  void apply(Work& w, Piece& p) const override {
    for (const auto& s : steps_) s->apply(w, p);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const JsonRef& j) {
  std::string type = j["type"].str();
  if (type == "NFC") return std::make_unique<Unicode>(true);
  if (type == "NFD") return std::make_unique<Unicode>(false);
  if (type == "Prepend") return std::make_unique<Prepend>(j["prepend"].str());
  if (type == "Strip")
    return std::make_unique<Strip>(j.bool_or("strip_left", true), j.bool_or("strip_right", true));
  if (type == "Replace") {
    JsonRef pat = j["pattern"];
    std::string content = j["content"].str();
    if (pat.has("String")) return std::make_unique<Replace>(pat["String"].str(), nullptr, content);
    if (pat.has("Regex")) {
      auto re = std::make_unique<Regex>(Regex::compile(pat["Regex"].str(), pat["Regex"].where()));
      return std::make_unique<Replace>("", std::move(re), content);
    }
    pat.fail("expected {\"String\": ...} or {\"Regex\": ...}");
  }
  if (type == "Sequence") {
    JsonRef list = j["normalizers"];
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (size_t i = 0; i < list.size(); ++i) steps.push_back(make_normalizer(list.at(i)));
    return std::make_unique<Sequence>(std::move(steps));
  }
  j["type"].fail(str("normalizer type '", type, "' is not supported"),
                 "supported normalizers: NFC, NFD, Prepend, Replace, Strip, Sequence");
}

std::string normalize_string(const Normalizer& n, std::string_view s) {
  Work w;
  Piece p{w.view(s, 0), 0, uint32_t(s.size())};
  n.apply(w, p);
  return std::string(w.str(p));
}

}  // namespace hs::tokenizer
