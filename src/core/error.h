// hs::Error: the one exception type of the project. It carries what failed, where (file:line, sample
// index, tensor or key name) and a hint that tells the user how to fix it. Messages read:
//   <where>: <what>
//     hint: <hint>
// Throw with the builder style:  throw hs::Error("unknown key 'lora.rr'").at("run.ini:12").hint("...");
// or with the HS_CHECK macro for internal invariants and argument checks.
#pragma once

#include <exception>
#include <sstream>
#include <string>
#include <utility>

namespace hs {

class Error : public std::exception {
 public:
  explicit Error(std::string what) : what_(std::move(what)) { rebuild(); }

  // Builder setters return *this by reference so that `throw Error(..).at(..).hint(..)` works.
  Error& at(std::string where) & {
    where_ = where_.empty() ? std::move(where) : std::move(where) + ": " + where_;
    rebuild();
    return *this;
  }
  Error&& at(std::string where) && { return std::move(at(std::move(where))); }
  Error& hint(std::string hint) & {
    hint_ = std::move(hint);
    rebuild();
    return *this;
  }
  Error&& hint(std::string hint) && { return std::move(this->hint(std::move(hint))); }

  const char* what() const noexcept override { return message_.c_str(); }
  const std::string& message() const { return what_; }
  const std::string& where() const { return where_; }
  const std::string& hint_text() const { return hint_; }

 private:
  void rebuild() {
    message_ = where_.empty() ? what_ : where_ + ": " + what_;
    if (!hint_.empty()) message_ += "\n  hint: " + hint_;
  }
  std::string what_, where_, hint_, message_;
};

// str(a, b, c): concatenate anything streamable (GCC 12 has no <format>).
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace hs

#define HS_STRINGIFY2(x) #x
#define HS_STRINGIFY(x) HS_STRINGIFY2(x)
#define HS_HERE (__FILE__ ":" HS_STRINGIFY(__LINE__))

// HS_CHECK(cond, parts...): throws hs::Error naming the failed condition and the source location.
#define HS_CHECK(cond, ...)                                                                      \
  do {                                                                                           \
    if (!(cond)) [[unlikely]]                                                                    \
      throw ::hs::Error(::hs::str("check failed: " #cond " " __VA_OPT__(, ) __VA_ARGS__)).at(HS_HERE); \
  } while (0)
