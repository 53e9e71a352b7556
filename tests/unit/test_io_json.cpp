// io::read_json / parse_json against errors placed by hand: each expected FILE:LINE:COLUMN below is counted
// from the text as written here (not taken from what the reader printed), and so is line_col's answer.
#include <functional>
#include <string>

#include "core/error.h"
#include "io/file.h"
#include "io/json.h"
#include "support/test_support.h"

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const hs::Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(IoJson, LineColCountsLinesAndBytes) {
  const std::string t = "ab\ncd\n";
  auto at = [&](size_t off) {
    auto lc = hs::io::line_col(t, off);
    return std::to_string(lc.line) + ":" + std::to_string(lc.column);
  };
  EXPECT_EQ(at(0), "1:1");   // 'a'
  EXPECT_EQ(at(2), "1:3");   // the first '\n' ends line 1
  EXPECT_EQ(at(3), "2:1");   // 'c'
  EXPECT_EQ(at(4), "2:2");   // 'd'
  EXPECT_EQ(at(6), "3:1");   // the end, after the last '\n'
  EXPECT_EQ(at(99), "3:1");  // past the end: clamped
}

TEST(IoJson, SyntaxErrorNamesFileLineColumnKeyAndHint) {
  const std::string dir = hs::test::temp_dir("io-json");
  const std::string path = dir + "/bad.json";
  // Line 3 is `  "b": [1, 2,, 3]`: the second comma, the error, is its 14th byte.
  hs::io::write_file_atomic(path, "{\n  \"a\": 1,\n  \"b\": [1, 2,, 3]\n}\n");
  const std::string msg = error_of([&] { hs::io::read_json(path, {"not valid JSON", "fix the comma"}); });
  // Two values of "b" were read before it: the key path is b[2].
  EXPECT_TRUE(contains(msg, path + ":3:14: not valid JSON at key 'b[2]' (line 3): syntax error")) << msg;
  EXPECT_TRUE(contains(msg, "hint: fix the comma")) << msg;
  EXPECT_FALSE(contains(msg, "json.exception")) << msg;  // nlohmann's tag and its own position are gone
  EXPECT_FALSE(contains(msg, "parse error at")) << msg;
  // The ordered reader says the same.
  EXPECT_EQ(error_of([&] { hs::io::read_ordered_json(path, {"not valid JSON", "fix the comma"}); }), msg);
  hs::io::remove_tree(dir);
}

TEST(IoJson, TruncatedTextFailsAtItsEnd) {
  // 11 bytes on one line: the parser runs out after the last one, at column 12.
  const std::string text = "{\"a\": [1, 2";
  ASSERT_EQ(text.size(), 11u);
  const std::string msg = error_of([&] { hs::io::parse_json(text, "cut.json"); });
  EXPECT_TRUE(contains(msg, "cut.json:1:12: not valid JSON at key 'a[2]' (line 1): ")) << msg;
  EXPECT_TRUE(contains(msg, "end of input")) << msg;
  EXPECT_TRUE(contains(msg, "hint: ")) << msg;  // the default hint
  // At the top level there is no key: `nope` fails at its second byte, where it stops spelling "null".
  const std::string top = error_of([&] { hs::io::parse_json("nope", "top.json"); });
  EXPECT_TRUE(contains(top, "top.json:1:2: not valid JSON: syntax error")) << top;
}

TEST(IoJson, NumberOverflowGetsAPositionToo) {
  // nlohmann's out_of_range error for 1e99999 carries no position; the reader finds line 2 and the key.
  // Line 2 is `  "x": 1e99999,`: the number takes bytes 8 to 14.
  const std::string text = "{\n  \"x\": 1e99999,\n  \"y\": 2\n}";
  const std::string msg = error_of([&] { hs::io::parse_json(text, "big.json"); });
  EXPECT_TRUE(contains(msg, "big.json:2:14: not valid JSON at key 'x' (line 2): number overflow")) << msg;
}

TEST(IoJson, GoodTextParsesAndRecordsDescribeTheirPosition) {
  auto j = hs::io::parse_ordered_json("{\"z\": 1, \"a\": [true]}", "ok.json");
  EXPECT_EQ(j.begin().key(), "z");  // file order kept
  EXPECT_EQ(j["a"][0], true);
  EXPECT_TRUE(hs::io::diagnose_json("[1]").reason.empty());
  // For JSON inside a record the caller names the record; the text gives line and column: `[1, x]`, the
  // 'x' is byte 5.
  auto f = hs::io::diagnose_json("[1, x]");
  EXPECT_TRUE(contains(hs::io::describe_json_failure("[1, x]", f), "line 1, column 5: syntax error"))
      << hs::io::describe_json_failure("[1, x]", f);
  EXPECT_THROW(hs::io::read_json("/nonexistent/file.json"), hs::Error);
}

}  // namespace
