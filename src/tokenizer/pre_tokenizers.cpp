// Pre-tokenizers of HF tokenizer.json: Split (regex or string, five delimiter behaviours, invert),
// ByteLevel (optional prefix space and GPT-2 regex; the model then sees raw bytes), Metaspace
// (replacement, prepend_scheme always/first/never or the legacy add_prefix_space, split), Digits and
// Sequence. The split logic mirrors NormalizedString::split in HF: matches and gaps cover the piece,
// the behaviour decides which are kept and merged, and empty pieces are dropped.
#include <algorithm>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace hs::tokenizer {

namespace {

enum class Behavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

// Splits piece `p` given `w.parts` (ranges relative to the piece, covering it, with is_match flags).
void emit_split(Work& w, const Piece& p, Behavior behavior, std::vector<Piece>& out) {
  auto& parts = w.parts;
  auto push = [&](Span s) {
    if (s.end > s.begin) out.push_back(Piece{p.text, p.b + s.begin, p.b + s.end});
  };
  switch (behavior) {
    case Behavior::isolated:
      for (const auto& [s, m] : parts) push(s);
      return;
    case Behavior::removed:
      for (const auto& [s, m] : parts)
        if (!m) push(s);
      return;
    case Behavior::contiguous: {
      bool prev = false, any = false;
      Span cur;
      for (const auto& [s, m] : parts) {
        if (any && m == prev) {
          cur.end = s.end;
        } else {
          if (any) push(cur);
          cur = s;
          any = true;
        }
        prev = m;
      }
      if (any) push(cur);
      return;
    }
    case Behavior::merged_with_previous: {
      bool prev = false, any = false;
      Span cur;
      for (const auto& [s, m] : parts) {
        if (m && !prev && any) {
          cur.end = s.end;
        } else {
          if (any) push(cur);
          cur = s;
          any = true;
        }
        prev = m;
      }
      if (any) push(cur);
      return;
    }
    case Behavior::merged_with_next: {
      // HF folds from the right: a match joins the piece after it unless that piece is a match too.
      size_t first_out = out.size();
      bool prev = false, any = false;
      Span cur;
      for (size_t i = parts.size(); i-- > 0;) {
        const auto& [s, m] = parts[i];
        if (m && !prev && any) {
          cur.begin = s.begin;
        } else {
          if (any) push(cur);
          cur = s;
          any = true;
        }
        prev = m;
      }
      if (any) push(cur);
      std::reverse(out.begin() + long(first_out), out.end());
      return;
    }
  }
}

// Fills w.parts from w.matches (sorted, non-overlapping) over a piece of length n.
void parts_from_matches(Work& w, uint32_t n, bool invert) {
  w.parts.clear();
  uint32_t prev = 0;
  for (const auto& [b, e] : w.matches) {
    if (b > prev) w.parts.push_back({Span{prev, b}, invert});
    w.parts.push_back({Span{b, e}, !invert});
    prev = e;
  }
  if (prev < n || w.parts.empty()) w.parts.push_back({Span{prev, n}, invert});
}

Behavior parse_behavior(const JsonRef& j) {
  std::string b = j.str();
  if (b == "Removed") return Behavior::removed;
  if (b == "Isolated") return Behavior::isolated;
  if (b == "MergedWithPrevious") return Behavior::merged_with_previous;
  if (b == "MergedWithNext") return Behavior::merged_with_next;
  if (b == "Contiguous") return Behavior::contiguous;
  j.fail("unknown split behavior '" + b + "'",
         "expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous");
}

class Split final : public PreTokenizer {
 public:
  Split(std::string literal, std::unique_ptr<Regex> regex, Behavior behavior, bool invert)
      : literal_(std::move(literal)), regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}
  void apply(Work& w, std::vector<Piece>& pieces) const override {
    auto& out = w.next;
    out.clear();
    for (const Piece& p : pieces) {
      if (p.id >= 0) {
        out.push_back(p);
        continue;
      }
      std::string_view s = w.str(p);
      w.matches.clear();
      if (regex_) {
        regex_->find_all(s, w.matches);
      } else if (!literal_.empty()) {
        for (size_t at = s.find(literal_); at != std::string_view::npos;
             at = s.find(literal_, at + literal_.size()))
          w.matches.emplace_back(uint32_t(at), uint32_t(at + literal_.size()));
      }
      if (behavior_ == Behavior::isolated) {  // the common case, without the parts list
        uint32_t prev = 0;
        for (const auto& [b, e] : w.matches) {
          if (b > prev) out.push_back(Piece{p.text, p.b + prev, p.b + b});
          if (e > b) out.push_back(Piece{p.text, p.b + b, p.b + e});
          prev = e;
        }
        if (p.b + prev < p.e) out.push_back(Piece{p.text, p.b + prev, p.e});
        continue;
      }
      parts_from_matches(w, p.e - p.b, invert_);
      emit_split(w, p, behavior_, out);
    }
    pieces.swap(out);
  }

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
  Behavior behavior_;
  bool invert_;
};

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevel final : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex, const std::string& where)
      : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_ = std::make_unique<Regex>(Regex::compile(kGpt2Pattern, where));
  }
  bool byte_level() const override { return true; }
  void apply(Work& w, std::vector<Piece>& pieces) const override {
    if (add_prefix_space_) {
      for (Piece& p : pieces) {
        if (p.id >= 0 || w.texts[p.text].str()[p.b] == ' ') continue;
        uint32_t t = w.owned();
        uint32_t first = uint32_t(unicode::utf8_length(uint8_t(w.texts[p.text].str()[p.b])));
        w.append(t, " ", w.texts[p.text].orig(p.b, p.b + first));
        w.append(t, p.text, p.b, p.e);
        p = Piece{t, 0, uint32_t(w.texts[t].own.size())};
      }
    }
    if (!regex_) return;
    auto& out = w.next;
    out.clear();
    for (const Piece& p : pieces) {
      if (p.id >= 0) {
        out.push_back(p);
        continue;
      }
      regex_->find_all(w.str(p), w.matches);
      uint32_t prev = 0;
      for (const auto& [b, e] : w.matches) {
        if (b > prev) out.push_back(Piece{p.text, p.b + prev, p.b + b});
        if (e > b) out.push_back(Piece{p.text, p.b + b, p.b + e});
        prev = e;
      }
      if (p.b + prev < p.e) out.push_back(Piece{p.text, p.b + prev, p.e});
    }
    pieces.swap(out);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

enum class PrependScheme { always, first, never };

class Metaspace final : public PreTokenizer {
 public:
  Metaspace(std::string replacement, PrependScheme scheme, bool split)
      : rep_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void apply(Work& w, std::vector<Piece>& pieces) const override {
    auto& out = w.next;
    out.clear();
    for (Piece p : pieces) {
      if (p.id >= 0) {
        out.push_back(p);
        continue;
      }
      // Replace spaces, then prepend the replacement as the scheme says.
      std::string_view s = w.str(p);
      bool has_space = s.find(' ') != std::string_view::npos;
      bool starts = s.substr(0, rep_.size()) == rep_ || (has_space && s[0] == ' ');
      bool prepend = false;
      if (!starts) {
        if (scheme_ == PrependScheme::always) prepend = true;
        if (scheme_ == PrependScheme::first) prepend = w.texts[p.text].orig(p.b, p.e).begin == 0;
      }
      if (has_space || prepend) {
        uint32_t t = w.owned();
        if (prepend) {
          uint32_t first = uint32_t(unicode::utf8_length(uint8_t(s[0])));
          w.append(t, rep_, w.texts[p.text].orig(p.b, p.b + first));
        }
        uint32_t prev = 0;
        for (size_t at = s.find(' '); at != std::string_view::npos; at = s.find(' ', at + 1)) {
          w.append(t, p.text, p.b + prev, p.b + uint32_t(at));
          w.append(t, rep_, w.texts[p.text].orig_byte(p.b + uint32_t(at)));
          prev = uint32_t(at) + 1;
        }
        w.append(t, p.text, p.b + prev, p.e);
        p = Piece{t, 0, uint32_t(w.texts[t].own.size())};
      }
      if (!split_) {
        out.push_back(p);
        continue;
      }
      std::string_view n = w.str(p);
      w.matches.clear();
      for (size_t at = n.find(rep_); at != std::string_view::npos; at = n.find(rep_, at + rep_.size()))
        w.matches.emplace_back(uint32_t(at), uint32_t(at + rep_.size()));
      parts_from_matches(w, p.e - p.b, false);
      emit_split(w, p, Behavior::merged_with_next, out);
    }
    pieces.swap(out);
  }

 private:
  std::string rep_;
  PrependScheme scheme_;
  bool split_;
};

class Digits final : public PreTokenizer {
 public:
  explicit Digits(bool individual) : individual_(individual) {}
  void apply(Work& w, std::vector<Piece>& pieces) const override {
    auto& out = w.next;
    out.clear();
    for (const Piece& p : pieces) {
      if (p.id >= 0) {
        out.push_back(p);
        continue;
      }
      std::string_view s = w.str(p);
      const auto* u = reinterpret_cast<const unsigned char*>(s.data());
      w.matches.clear();
      for (size_t i = 0; i < s.size();) {
        int len;
        uint32_t cp = unicode::decode_utf8(u + i, &len);
        if (unicode::is_number(cp)) w.matches.emplace_back(uint32_t(i), uint32_t(i + size_t(len)));
        i += size_t(len);
      }
      parts_from_matches(w, p.e - p.b, false);
      emit_split(w, p, individual_ ? Behavior::isolated : Behavior::contiguous, out);
    }
    pieces.swap(out);
  }

 private:
  bool individual_;
};

class Sequence final : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> steps) : steps_(std::move(steps)) {}
  bool byte_level() const override { return !steps_.empty() && steps_.back()->byte_level(); }
  void apply(Work& w, std::vector<Piece>& pieces) const override {
    for (const auto& s : steps_) s->apply(w, pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

PrependScheme parse_scheme(const JsonRef& j) {
  std::string s = j.str();
  if (s == "always") return PrependScheme::always;
  if (s == "first") return PrependScheme::first;
  if (s == "never") return PrependScheme::never;
  j.fail("unknown prepend_scheme '" + s + "'", "expected always, first or never");
}

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const JsonRef& j) {
  std::string type = j["type"].str();
  if (type == "Split") {
    JsonRef pat = j["pattern"];
    Behavior behavior = parse_behavior(j["behavior"]);
    bool invert = j.bool_or("invert", false);
    if (pat.has("String")) return std::make_unique<Split>(pat["String"].str(), nullptr, behavior, invert);
    if (pat.has("Regex")) {
      auto re = std::make_unique<Regex>(Regex::compile(pat["Regex"].str(), pat["Regex"].where()));
      return std::make_unique<Split>("", std::move(re), behavior, invert);
    }
    pat.fail("expected {\"String\": ...} or {\"Regex\": ...}");
  }
  if (type == "ByteLevel")
    return std::make_unique<ByteLevel>(j.bool_or("add_prefix_space", true), j.bool_or("use_regex", true),
                                       j.where());
  if (type == "Metaspace") {
    std::string rep = j["replacement"].str();
    if (rep.empty() || unicode::utf8_length(uint8_t(rep[0])) != int(rep.size()))
      j["replacement"].fail("expected one character");
    // Legacy files have add_prefix_space instead of prepend_scheme (false means never).
    PrependScheme scheme =
        j.has("prepend_scheme") ? parse_scheme(j["prepend_scheme"]) : PrependScheme::always;
    if (j.has("add_prefix_space") && !j["add_prefix_space"].boolean()) {
      if (j.has("prepend_scheme") && scheme != PrependScheme::never)
        j["add_prefix_space"].fail("add_prefix_space=false does not match prepend_scheme");
      scheme = PrependScheme::never;
    }
    return std::make_unique<Metaspace>(rep, scheme, j.bool_or("split", true));
  }
  if (type == "Digits") return std::make_unique<Digits>(j.bool_or("individual_digits", false));
  if (type == "Sequence") {
    JsonRef list = j["pretokenizers"];
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (size_t i = 0; i < list.size(); ++i) {
      if (!steps.empty() && steps.back()->byte_level())
        list.at(i).fail("a pre-tokenizer after ByteLevel is not supported",
                        "ByteLevel must be the last pre-tokenizer of the sequence");
      steps.push_back(make_pre_tokenizer(list.at(i)));
    }
    return std::make_unique<Sequence>(std::move(steps));
  }
  j["type"].fail(str("pre-tokenizer type '", type, "' is not supported"),
                 "supported pre-tokenizers: Split, ByteLevel, Metaspace, Digits, Sequence");
}

}  // namespace hs::tokenizer
