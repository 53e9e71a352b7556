// Parser (recursive descent over the pattern's code points) -> AST -> instruction program, and a
// backtracking executor with an explicit stack. Semantics are Oniguruma's (Ruby syntax, Unicode):
// alternatives are tried in order and the first that leads to a match wins; greedy quantifiers take
// as much as they can and give back one character at a time. \s is White_Space, \d is Nd, \w is
// L|M|Nd|Pc, `.` is anything but \n. Case-insensitive literals match every code point with the same
// simple case fold.
#include "tokenizer/regex.h"

#include <algorithm>
#include <cctype>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace hs::tokenizer {

namespace {

namespace uc = unicode;

struct CharSet {
  uint64_t ascii[2] = {0, 0};
  bool negated = false;
  uint32_t cats = 0;               // categories matched
  std::vector<uint32_t> not_cats;  // \P{..} items: match when the category is outside the mask
  bool white = false, not_white = false, word = false, not_word = false, digit = false, not_digit = false;
  bool dot = false;                                   // anything but \n
  std::vector<std::pair<uint32_t, uint32_t>> ranges;  // inclusive

  bool items(uint32_t cp) const {
    auto cat = uc::category(cp);
    if ((cats >> cat) & 1) return true;
    for (uint32_t m : not_cats)
      if (!((m >> cat) & 1)) return true;
    if (white || not_white) {
      bool w = uc::is_white(cp);
      if ((white && w) || (not_white && !w)) return true;
    }
    if (word || not_word) {
      bool w = uc::is_onig_word(cp);
      if ((word && w) || (not_word && !w)) return true;
    }
    if ((digit && cat == uc::Nd) || (not_digit && cat != uc::Nd)) return true;
    if (dot && cp != '\n') return true;
    for (const auto& [lo, hi] : ranges)
      if (cp >= lo && cp <= hi) return true;
    return false;
  }
  void finish() {
    for (uint32_t c = 0; c < 128; ++c)
      if (items(c) != negated) ascii[c >> 6] |= uint64_t(1) << (c & 63);
  }
  bool match(uint32_t cp) const {
    if (cp < 128) return (ascii[cp >> 6] >> (cp & 63)) & 1;
    return items(cp) != negated;
  }
};

struct Node {
  enum Kind { kEmpty, kSet, kConcat, kAlt, kRepeat, kLook } kind = kEmpty;
  int set = -1;
  std::vector<Node> kids;
  int min = 0, max = -1;  // kRepeat; max -1 = unbounded
  enum Mode { kGreedy, kLazy, kPossessive } mode = kGreedy;
  bool negate = false;  // kLook
};

enum Op : uint8_t { kOpSet, kOpRep, kOpSplit, kOpJmp, kOpMatch, kOpLook };

struct Inst {
  Op op;
  uint8_t mode = 0;  // kOpRep: Node::Mode; kOpLook: 1 = negative
  uint32_t a = 0;    // set / jump target / first branch / sub-program
  uint32_t b = 0;    // second branch
  uint32_t min = 0, max = 0;
};

using Program = std::vector<Inst>;

struct Entry {
  uint32_t pc, pos, floor;  // floor != kNoFloor: a repeat that can give back characters down to floor
};
constexpr uint32_t kNoFloor = 0xFFFFFFFFu;

// ---- parser ----

class Parser {
 public:
  Parser(std::string_view pattern, const std::string& where, std::vector<CharSet>& sets)
      : pattern_(pattern), where_(where), sets_(sets) {
    const auto* p = reinterpret_cast<const unsigned char*>(pattern.data());
    if (uc::first_invalid_utf8(pattern) != std::string_view::npos) fail("the pattern is not valid UTF-8", 0);
    for (size_t i = 0; i < pattern.size();) {
      int len;
      cps_.push_back(uc::decode_utf8(p + i, &len));
      i += len;
    }
  }

  Node parse() {
    Node n = alternation();
    if (i_ < cps_.size()) fail("unbalanced ')'", i_);
    return n;
  }

 private:
  [[noreturn]] void fail(const std::string& what, size_t at) const {
    throw Error(str("unsupported or invalid regex: ", what, " at character ", at, " of /", pattern_, "/"))
        .at(where_)
        .hint(
            "hsloth's tokenizer regex engine supports alternation, groups, (?i:..), classes with \\p{..}, "
            "quantifiers and lookahead; please report this pattern");
  }
  bool eof() const { return i_ >= cps_.size(); }
  uint32_t peek(size_t k = 0) const { return i_ + k < cps_.size() ? cps_[i_ + k] : 0xFFFFFFFFu; }

  Node alternation() {
    std::vector<Node> alts;
    alts.push_back(concat());
    while (!eof() && peek() == '|') {
      ++i_;
      alts.push_back(concat());
    }
    if (alts.size() == 1) return std::move(alts[0]);
    Node n;
    n.kind = Node::kAlt;
    n.kids = std::move(alts);
    return n;
  }

  Node concat() {
    Node n;
    n.kind = Node::kConcat;
    while (!eof() && peek() != '|' && peek() != ')') {
      if (peek() == '(' && peek(1) == '?' && (peek(2) == 'i' || peek(2) == '-') && inline_flags()) continue;
      Node atom_node = atom();
      n.kids.push_back(quantified(std::move(atom_node)));
    }
    // An inline (?i) lasts to the end of the enclosing group (group() restores the flag).
    if (n.kids.size() == 1) return std::move(n.kids[0]);
    if (n.kids.empty()) n.kind = Node::kEmpty;
    return n;
  }

  // (?i) or (?-i) without a colon: changes the flag for the rest of the group. Returns false when
  // the text is (?i:...) instead, which atom() handles.
  bool inline_flags() {
    size_t j = i_ + 2;
    bool on = true;
    if (j < cps_.size() && cps_[j] == '-') {
      on = false;
      ++j;
    }
    if (j < cps_.size() && cps_[j] == 'i' && j + 1 < cps_.size() && cps_[j + 1] == ')') {
      ci_ = on;
      i_ = j + 2;
      return true;
    }
    return false;
  }

  int new_set(CharSet s) {
    s.finish();
    sets_.push_back(std::move(s));
    return int(sets_.size()) - 1;
  }
  Node set_node(CharSet s) {
    Node n;
    n.kind = Node::kSet;
    n.set = new_set(std::move(s));
    return n;
  }

  void add_literal(CharSet& s, uint32_t cp) {
    if (ci_) {
      for (uint32_t v : uc::case_variants(cp)) s.ranges.emplace_back(v, v);
    } else {
      s.ranges.emplace_back(cp, cp);
    }
  }
  void add_range(CharSet& s, uint32_t lo, uint32_t hi, size_t at) {
    if (lo > hi) fail("class range out of order", at);
    if (!ci_) {
      s.ranges.emplace_back(lo, hi);
      return;
    }
    if (hi - lo > 1024) fail("case-insensitive class range wider than 1024 code points", at);
    for (uint32_t c = lo; c <= hi; ++c) add_literal(s, c);
  }

  Node atom() {
    size_t at = i_;
    uint32_t c = cps_[i_++];
    switch (c) {
      case '(':
        return group(at);
      case '[': {
        CharSet s = char_class(at);
        return set_node(std::move(s));
      }
      case '.': {
        CharSet s;
        s.dot = true;
        return set_node(std::move(s));
      }
      case '^':
      case '$':
        fail("anchors (^ $) are not supported", at);
      case '*':
      case '+':
      case '?':
        fail("quantifier with nothing to repeat", at);
      case '\\': {
        CharSet s;
        escape(s, at, false);
        return set_node(std::move(s));
      }
      default: {
        CharSet s;
        add_literal(s, c);
        return set_node(std::move(s));
      }
    }
  }

  Node group(size_t at) {
    bool saved_ci = ci_;
    Node inner;
    bool look = false, negate = false;
    if (peek() == '?') {
      ++i_;
      uint32_t k = eof() ? 0 : cps_[i_++];
      if (k == ':') {
      } else if (k == '=' || k == '!') {
        look = true;
        negate = k == '!';
      } else if (k == '<' && (peek() == '=' || peek() == '!')) {
        fail("lookbehind is not supported", at);
      } else if (k == '<' || k == 'P' || k == '\'') {
        // Named group: (?<name>...), (?P<name>...), (?'name'...): same as a plain group.
        if (k == 'P') {
          if (peek() != '<') fail("unknown group syntax", at);
          ++i_;
        }
        uint32_t close = k == '\'' ? '\'' : '>';
        while (!eof() && peek() != close) ++i_;
        if (eof()) fail("unterminated group name", at);
        ++i_;
      } else if (k == 'i' || k == '-') {
        bool on = k == 'i';
        if (k == '-') {
          if (peek() != 'i') fail("only the i flag is supported in (?-..)", at);
          ++i_;
        }
        if (peek() != ':') fail("only (?i:...) and (?-i:...) flag groups are supported", at);
        ++i_;
        ci_ = on;
      } else if (k == '>') {
        fail("atomic groups (?>...) are not supported", at);
      } else {
        fail("unknown group syntax (?" + std::string(1, char(k)) + "...", at);
      }
    }
    inner = alternation();
    if (eof() || peek() != ')') fail("missing ')'", at);
    ++i_;
    ci_ = saved_ci;
    if (!look) return inner;
    Node n;
    n.kind = Node::kLook;
    n.negate = negate;
    n.kids.push_back(std::move(inner));
    return n;
  }

  static uint32_t category_mask(std::string_view name) {
    struct Entry {
      const char* name;
      uint32_t mask;
    };
    auto bit = [](uc::Category c) { return uint32_t(1) << c; };
    static const Entry table[] = {
        {"L", bit(uc::Lu) | bit(uc::Ll) | bit(uc::Lt) | bit(uc::Lm) | bit(uc::Lo)},
        {"Letter", bit(uc::Lu) | bit(uc::Ll) | bit(uc::Lt) | bit(uc::Lm) | bit(uc::Lo)},
        {"Lu", bit(uc::Lu)},
        {"Ll", bit(uc::Ll)},
        {"Lt", bit(uc::Lt)},
        {"Lm", bit(uc::Lm)},
        {"Lo", bit(uc::Lo)},
        {"LC", bit(uc::Lu) | bit(uc::Ll) | bit(uc::Lt)},
        {"M", bit(uc::Mn) | bit(uc::Mc) | bit(uc::Me)},
        {"Mark", bit(uc::Mn) | bit(uc::Mc) | bit(uc::Me)},
        {"Mn", bit(uc::Mn)},
        {"Mc", bit(uc::Mc)},
        {"Me", bit(uc::Me)},
        {"N", bit(uc::Nd) | bit(uc::Nl) | bit(uc::No)},
        {"Number", bit(uc::Nd) | bit(uc::Nl) | bit(uc::No)},
        {"Nd", bit(uc::Nd)},
        {"Nl", bit(uc::Nl)},
        {"No", bit(uc::No)},
        {"P",
         bit(uc::Pc) | bit(uc::Pd) | bit(uc::Ps) | bit(uc::Pe) | bit(uc::Pi) | bit(uc::Pf) | bit(uc::Po)},
        {"Punctuation",
         bit(uc::Pc) | bit(uc::Pd) | bit(uc::Ps) | bit(uc::Pe) | bit(uc::Pi) | bit(uc::Pf) | bit(uc::Po)},
        {"Pc", bit(uc::Pc)},
        {"Pd", bit(uc::Pd)},
        {"Ps", bit(uc::Ps)},
        {"Pe", bit(uc::Pe)},
        {"Pi", bit(uc::Pi)},
        {"Pf", bit(uc::Pf)},
        {"Po", bit(uc::Po)},
        {"S", bit(uc::Sm) | bit(uc::Sc) | bit(uc::Sk) | bit(uc::So)},
        {"Symbol", bit(uc::Sm) | bit(uc::Sc) | bit(uc::Sk) | bit(uc::So)},
        {"Sm", bit(uc::Sm)},
        {"Sc", bit(uc::Sc)},
        {"Sk", bit(uc::Sk)},
        {"So", bit(uc::So)},
        {"Z", bit(uc::Zs) | bit(uc::Zl) | bit(uc::Zp)},
        {"Separator", bit(uc::Zs) | bit(uc::Zl) | bit(uc::Zp)},
        {"Zs", bit(uc::Zs)},
        {"Zl", bit(uc::Zl)},
        {"Zp", bit(uc::Zp)},
        {"C", bit(uc::Cc) | bit(uc::Cf) | bit(uc::Cs) | bit(uc::Co) | bit(uc::Cn)},
        {"Other", bit(uc::Cc) | bit(uc::Cf) | bit(uc::Cs) | bit(uc::Co) | bit(uc::Cn)},
        {"Cc", bit(uc::Cc)},
        {"Cf", bit(uc::Cf)},
        {"Cs", bit(uc::Cs)},
        {"Co", bit(uc::Co)},
        {"Cn", bit(uc::Cn)},
    };
    for (const auto& e : table)
      if (name == e.name) return e.mask;
    return 0;
  }

  // After a backslash. In a class (`in_class`), \b is a backspace; outside, anchors are errors.
  void escape(CharSet& s, size_t at, bool in_class) {
    if (eof()) fail("pattern ends with a backslash", at);
    uint32_t c = cps_[i_++];
    switch (c) {
      case 's':
        s.white = true;
        return;
      case 'S':
        s.not_white = true;
        return;
      case 'd':
        s.digit = true;
        return;
      case 'D':
        s.not_digit = true;
        return;
      case 'w':
        s.word = true;
        return;
      case 'W':
        s.not_word = true;
        return;
      case 'h':
        s.ranges.insert(s.ranges.end(), {{'0', '9'}, {'a', 'f'}, {'A', 'F'}});
        return;
      case 'H':
        fail("\\H is not supported", at);
      case 'p':
      case 'P': {
        bool neg = c == 'P';
        std::string name;
        if (peek() == '{') {
          ++i_;
          if (peek() == '^') {
            neg = !neg;
            ++i_;
          }
          while (!eof() && peek() != '}') name.push_back(char(cps_[i_++]));
          if (eof()) fail("unterminated \\p{", at);
          ++i_;
        } else if (!eof()) {
          name.push_back(char(cps_[i_++]));
        }
        uint32_t mask = category_mask(name);
        if (!mask) fail("unsupported property \\p{" + name + "} (only general categories are)", at);
        if (ci_ && (mask & ((1u << uc::Lu) | (1u << uc::Ll) | (1u << uc::Lt))) && mask != category_mask("L"))
          fail("case-insensitive \\p{Lu}/\\p{Ll}/\\p{Lt} is not supported", at);
        if (neg)
          s.not_cats.push_back(mask);
        else
          s.cats |= mask;
        return;
      }
      case 'r':
        add_literal(s, '\r');
        return;
      case 'n':
        add_literal(s, '\n');
        return;
      case 't':
        add_literal(s, '\t');
        return;
      case 'f':
        add_literal(s, '\f');
        return;
      case 'v':
        add_literal(s, '\v');
        return;
      case 'a':
        add_literal(s, 0x07);
        return;
      case 'e':
        add_literal(s, 0x1B);
        return;
      case '0':
        add_literal(s, 0);
        return;
      case 'x': {
        uint32_t v = 0;
        if (peek() == '{') {
          ++i_;
          int digits = 0;
          while (!eof() && peek() != '}') {
            v = v * 16 + hex(cps_[i_++], at);
            ++digits;
          }
          if (eof() || !digits || v > 0x10FFFF) fail("bad \\x{...}", at);
          ++i_;
        } else {
          for (int k = 0; k < 2 && !eof() && is_hex(peek()); ++k) v = v * 16 + hex(cps_[i_++], at);
        }
        add_literal(s, v);
        return;
      }
      case 'u': {
        uint32_t v = 0;
        for (int k = 0; k < 4; ++k) {
          if (eof()) fail("bad \\u escape", at);
          v = v * 16 + hex(cps_[i_++], at);
        }
        add_literal(s, v);
        return;
      }
      case 'b':
        if (in_class) {
          add_literal(s, 0x08);
          return;
        }
        fail("word boundaries (\\b) are not supported", at);
      default:
        if (c < 128 && std::isalnum(int(c))) fail(str("unsupported escape \\", char(c)), at);
        add_literal(s, c);  // escaped punctuation or a non-ASCII character stands for itself
    }
  }
  static bool is_hex(uint32_t c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  }
  uint32_t hex(uint32_t c, size_t at) const {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    fail("bad hex digit", at);
  }

  CharSet char_class(size_t at) {
    CharSet s;
    if (peek() == '^') {
      s.negated = true;
      ++i_;
    }
    bool first = true;
    while (true) {
      if (eof()) fail("missing ']'", at);
      size_t item_at = i_;
      uint32_t c = cps_[i_++];
      if (c == ']' && !first) break;
      first = false;
      if (c == '[') fail("nested classes and class set operations are not supported", item_at);
      if (c == '&' && peek() == '&') fail("class intersection (&&) is not supported", item_at);
      uint32_t lo;
      if (c == '\\') {
        CharSet one;
        escape(one, item_at, true);
        // A single literal may start a range; anything else (\s, \p{..}) is merged as is.
        bool literal = one.ranges.size() == 1 && one.ranges[0].first == one.ranges[0].second && !one.cats &&
                       one.not_cats.empty() && !one.white && !one.not_white && !one.word && !one.not_word &&
                       !one.digit && !one.not_digit && !ci_;
        if (!literal) {
          merge(s, one);
          continue;
        }
        lo = one.ranges[0].first;
      } else {
        lo = c;
      }
      if (peek() == '-' && peek(1) != ']' && i_ + 1 < cps_.size()) {
        ++i_;
        size_t hi_at = i_;
        uint32_t hi = cps_[i_++];
        if (hi == '\\') {
          CharSet one;
          bool saved = ci_;
          ci_ = false;
          escape(one, hi_at, true);
          ci_ = saved;
          if (one.ranges.size() != 1 || one.ranges[0].first != one.ranges[0].second)
            fail("class range must end in a single character", hi_at);
          hi = one.ranges[0].first;
        } else if (hi == '[') {
          fail("nested classes are not supported", hi_at);
        }
        add_range(s, lo, hi, item_at);
      } else {
        add_literal(s, lo);
      }
    }
    return s;
  }
  static void merge(CharSet& into, const CharSet& from) {
    into.cats |= from.cats;
    into.not_cats.insert(into.not_cats.end(), from.not_cats.begin(), from.not_cats.end());
    into.white |= from.white;
    into.not_white |= from.not_white;
    into.word |= from.word;
    into.not_word |= from.not_word;
    into.digit |= from.digit;
    into.not_digit |= from.not_digit;
    into.ranges.insert(into.ranges.end(), from.ranges.begin(), from.ranges.end());
  }

  bool parse_int(int* v) {
    if (eof() || peek() < '0' || peek() > '9') return false;
    long x = 0;
    while (!eof() && peek() >= '0' && peek() <= '9') {
      x = x * 10 + long(cps_[i_++] - '0');
      if (x > 100000) fail("repeat count too large", i_);
    }
    *v = int(x);
    return true;
  }

  Node quantified(Node atom_node) {
    if (eof()) return atom_node;
    size_t at = i_;
    uint32_t c = peek();
    int min, max;
    if (c == '?') {
      min = 0, max = 1;
      ++i_;
    } else if (c == '*') {
      min = 0, max = -1;
      ++i_;
    } else if (c == '+') {
      min = 1, max = -1;
      ++i_;
    } else if (c == '{') {
      // {m} {m,} {m,n} {,n}; anything else is a literal '{' as in Oniguruma.
      size_t save = i_;
      ++i_;
      int a = -1, b = -1;
      bool has_a = parse_int(&a);
      bool comma = false;
      if (peek() == ',') {
        comma = true;
        ++i_;
      }
      bool has_b = comma && parse_int(&b);
      if (peek() != '}' || (!has_a && !has_b)) {
        i_ = save;
        return atom_node;  // the caller's next atom() reads '{' as a literal
      }
      ++i_;
      min = has_a ? a : 0;
      max = comma ? (has_b ? b : -1) : a;
      if (max >= 0 && max < min) fail("repeat {m,n} with n < m", at);
    } else {
      return atom_node;
    }
    Node n;
    n.kind = Node::kRepeat;
    n.min = min;
    n.max = max;
    if (peek() == '?') {
      n.mode = Node::kLazy;
      ++i_;
    } else if (peek() == '+' && c != '{') {
      n.mode = Node::kPossessive;
      ++i_;
    }
    if (atom_node.kind == Node::kLook) fail("quantified lookahead", at);
    n.kids.push_back(std::move(atom_node));
    if (!eof() && (peek() == '?' || peek() == '*' || peek() == '+'))
      fail("nested quantifiers are not supported", i_);
    return n;
  }

  std::string_view pattern_;
  const std::string& where_;
  std::vector<CharSet>& sets_;
  std::vector<uint32_t> cps_;
  size_t i_ = 0;
  bool ci_ = false;
};

bool nullable(const Node& n) {
  switch (n.kind) {
    case Node::kEmpty:
    case Node::kLook:
      return true;
    case Node::kSet:
      return false;
    case Node::kConcat:
      return std::all_of(n.kids.begin(), n.kids.end(), nullable);
    case Node::kAlt:
      return std::any_of(n.kids.begin(), n.kids.end(), nullable);
    case Node::kRepeat:
      return n.min == 0 || nullable(n.kids[0]);
  }
  return true;
}

}  // namespace

struct Regex::Impl {
  std::string pattern, where;
  std::vector<CharSet> sets;
  std::vector<Program> programs;  // [0] is the main program; the others are lookahead bodies

  void compile(const Node& n, Program& p) {
    switch (n.kind) {
      case Node::kEmpty:
        return;
      case Node::kSet:
        p.push_back({kOpSet, 0, uint32_t(n.set)});
        return;
      case Node::kConcat:
        for (const auto& k : n.kids) compile(k, p);
        return;
      case Node::kAlt: {
        std::vector<size_t> jumps;
        for (size_t i = 0; i < n.kids.size(); ++i) {
          if (i + 1 < n.kids.size()) {
            size_t split = p.size();
            p.push_back({kOpSplit, 0, uint32_t(split + 1)});
            compile(n.kids[i], p);
            jumps.push_back(p.size());
            p.push_back({kOpJmp});
            p[split].b = uint32_t(p.size());
          } else {
            compile(n.kids[i], p);
          }
        }
        for (size_t j : jumps) p[j].a = uint32_t(p.size());
        return;
      }
      case Node::kLook: {
        Program sub;
        compile(n.kids[0], sub);
        sub.push_back({kOpMatch});
        programs.push_back(std::move(sub));
        p.push_back({kOpLook, uint8_t(n.negate ? 1 : 0), uint32_t(programs.size() - 1)});
        return;
      }
      case Node::kRepeat: {
        const Node& body = n.kids[0];
        if (body.kind == Node::kSet && n.mode != Node::kLazy) {
          Inst in{kOpRep, uint8_t(n.mode), uint32_t(body.set)};
          in.min = uint32_t(n.min);
          in.max = n.max < 0 ? 0xFFFFFFFFu : uint32_t(n.max);
          p.push_back(in);
          return;
        }
        if (n.mode == Node::kPossessive)
          throw Error(str("unsupported regex: possessive quantifier on a group in /", pattern, "/"))
              .at(where)
              .hint("possessive quantifiers are supported on single characters and classes only");
        if (nullable(body))
          throw Error(
              str("unsupported regex: a quantified group that can match empty text in /", pattern, "/"))
              .at(where);
        bool lazy = n.mode == Node::kLazy;
        for (int i = 0; i < n.min; ++i) compile(body, p);
        if (n.max < 0) {
          size_t loop = p.size();
          p.push_back({kOpSplit});
          compile(body, p);
          p.push_back({kOpJmp, 0, uint32_t(loop)});
          size_t out = p.size();
          p[loop].a = lazy ? uint32_t(out) : uint32_t(loop + 1);
          p[loop].b = lazy ? uint32_t(loop + 1) : uint32_t(out);
        } else {
          std::vector<size_t> splits;
          for (int i = n.min; i < n.max; ++i) {
            splits.push_back(p.size());
            p.push_back({kOpSplit});
            compile(body, p);
          }
          size_t out = p.size();
          for (size_t s : splits) {
            p[s].a = lazy ? uint32_t(out) : uint32_t(s + 1);
            p[s].b = lazy ? uint32_t(s + 1) : uint32_t(out);
          }
        }
        return;
      }
    }
  }

  // Anchored run of program `prog` at `start`; stack entries above `base` belong to this run.
  bool run(uint32_t prog, const unsigned char* text, size_t n, uint32_t start, uint32_t* end,
           std::vector<Entry>& stack) const {
    const Program& p = programs[prog];
    const size_t base = stack.size();
    uint32_t pc = 0, pos = start;
    while (true) {
      const Inst& in = p[pc];
      bool ok = true;
      switch (in.op) {
        case kOpMatch:
          *end = pos;
          stack.resize(base);
          return true;
        case kOpJmp:
          pc = in.a;
          continue;
        case kOpSplit:
          stack.push_back({in.b, pos, kNoFloor});
          pc = in.a;
          continue;
        case kOpSet: {
          if (pos >= n) {
            ok = false;
            break;
          }
          int len;
          uint32_t cp = unicode::decode_utf8(text + pos, &len);
          if (!sets[in.a].match(cp)) {
            ok = false;
            break;
          }
          pos += uint32_t(len);
          ++pc;
          continue;
        }
        case kOpRep: {
          const CharSet& s = sets[in.a];
          uint32_t count = 0, q = pos, floor = in.min == 0 ? pos : kNoFloor;
          while (count < in.max && q < n) {
            int len;
            uint32_t cp = unicode::decode_utf8(text + q, &len);
            if (!s.match(cp)) break;
            q += uint32_t(len);
            if (++count == in.min) floor = q;
          }
          if (count < in.min) {
            ok = false;
            break;
          }
          if (in.mode == Node::kGreedy && q > floor) stack.push_back({pc + 1, q, floor});
          pos = q;
          ++pc;
          continue;
        }
        case kOpLook: {
          uint32_t e;
          bool m = run(in.a, text, n, pos, &e, stack);
          if (m == (in.mode == 1)) {
            ok = false;
            break;
          }
          ++pc;
          continue;
        }
      }
      if (ok) continue;
      // Backtrack.
      while (true) {
        if (stack.size() == base) return false;
        Entry& top = stack.back();
        if (top.floor == kNoFloor) {
          pc = top.pc;
          pos = top.pos;
          stack.pop_back();
          break;
        }
        // A greedy repeat gives back one character.
        uint32_t q = top.pos - 1;
        while (q > top.floor && (text[q] & 0xC0) == 0x80) --q;
        pc = top.pc;
        pos = q;
        if (q > top.floor)
          top.pos = q;
        else
          stack.pop_back();
        break;
      }
    }
  }
};

Regex::Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;
Regex::~Regex() = default;

Regex Regex::compile(std::string_view pattern, const std::string& where) {
  unicode::init();
  Regex r;
  r.impl_ = std::make_unique<Impl>();
  r.impl_->pattern = std::string(pattern);
  r.impl_->where = where;
  Parser parser(r.impl_->pattern, r.impl_->where, r.impl_->sets);
  Node root = parser.parse();
  r.impl_->programs.emplace_back();
  Program main;
  r.impl_->compile(root, main);
  main.push_back({kOpMatch});
  r.impl_->programs[0] = std::move(main);
  return r;
}

const std::string& Regex::pattern() const { return impl_->pattern; }

bool Regex::search(std::string_view text, size_t from, size_t* begin, size_t* end) const {
  thread_local std::vector<Entry> stack;
  const auto* t = reinterpret_cast<const unsigned char*>(text.data());
  size_t n = text.size();
  for (size_t s = from; s <= n;) {
    uint32_t e;
    stack.clear();
    if (impl_->run(0, t, n, uint32_t(s), &e, stack)) {
      *begin = s;
      *end = e;
      return true;
    }
    if (s == n) break;
    s += size_t(unicode::utf8_length(t[s]));
  }
  return false;
}

void Regex::find_all(std::string_view text, std::vector<std::pair<uint32_t, uint32_t>>& out) const {
  out.clear();
  size_t n = text.size(), last_end = 0;
  bool have_last = false;
  size_t last_match_end = 0;
  while (last_end <= n) {
    size_t b, e;
    if (!search(text, last_end, &b, &e)) break;
    if (b == e && have_last && last_match_end == e) {
      last_end += last_end < n ? size_t(unicode::utf8_length(uint8_t(text[last_end]))) : 1;
      continue;
    }
    last_end = e;
    last_match_end = e;
    have_last = true;
    out.emplace_back(uint32_t(b), uint32_t(e));
  }
}

}  // namespace hs::tokenizer
