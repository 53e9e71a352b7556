// A small backtracking regex engine with Oniguruma's semantics (leftmost-first alternation, greedy
// quantifiers that backtrack) for exactly the constructs HF tokenizer.json Split patterns use:
// alternation, groups (capturing or not, (?i:...) and (?-i:...)), character classes with ranges,
// negation, \p{..}/\P{..} general categories, \s \S \d \D \w \W \h \H, escapes (\r \n \t \f \v \e \0
// \xHH \x{...} \uHHHH), `.`, the quantifiers ? * + {m} {m,} {m,n} {,n} (lazy `?` and possessive `+`
// forms on single characters too), and lookahead (?=...) (?!...). Anything else (anchors, lookbehind,
// backreferences, class set operations, Unicode scripts) is an hs::Error naming the construct and
// its position, so a tokenizer never silently splits differently from HF.
//
// Patterns compile to a program of instructions; single-character atoms become CharSets with an ASCII
// bitmap, and a repeated CharSet runs as one instruction that backs off one character at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hs::tokenizer {

class Regex {
 public:
  // `where` names the pattern's origin (file and JSON key) in error messages.
  static Regex compile(std::string_view pattern, const std::string& where);

  Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  ~Regex();

  // Leftmost-first match at or after byte `from` of valid UTF-8 `text`; false when there is none.
  bool search(std::string_view text, size_t from, size_t* begin, size_t* end) const;
  // Non-overlapping matches left to right, like Oniguruma's find_iter in HF tokenizers (an empty
  // match right after the previous match is skipped by one character).
  void find_all(std::string_view text, std::vector<std::pair<uint32_t, uint32_t>>& out) const;
  const std::string& pattern() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace hs::tokenizer
