// Input side of prep: UTF-8 repair against Python's errors="replace", the record reader on JSONL and
// JSON arrays (plain and gzip), errors with file:line, and each record format's mapping and rejections.
#include <zlib.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "core/error.h"
#include "data_tools/formats.h"
#include "data_tools/input_reader.h"
#include "data_tools/prep.h"
#include "data_tools/utf8.h"
#include "io/file.h"
#include "io/sha256.h"
#include "support/test_support.h"

namespace fs = std::filesystem;
using namespace hs::data_tools;
using nlohmann::json;

namespace {

struct TempDir {
  std::string path = hs::test::temp_dir("hs-data-inputs");
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name, const std::string& bytes) const {
    std::string p = path + "/" + name;
    hs::io::write_file_atomic(p, bytes);
    return p;
  }
  std::string gz(const std::string& name, const std::string& bytes) const {
    std::string p = path + "/" + name;
    gzFile g = gzopen(p.c_str(), "wb");
    gzwrite(g, bytes.data(), unsigned(bytes.size()));
    gzclose(g);
    return p;
  }
};

std::vector<RawRecord> read_all(const std::string& path, std::vector<std::string>* wheres = nullptr) {
  RecordReader r(path);
  std::vector<RawRecord> out;
  RawRecord rec;
  while (r.next(rec)) {
    if (wheres) wheres->push_back(r.where(rec));
    out.push_back(rec);
  }
  return out;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const hs::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an hs::Error";
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

// Expected outputs from CPython: bytes.decode("utf-8", errors="replace").encode("utf-8").
TEST(DataUtf8, RepairMatchesPythonReplace) {
  struct Case {
    std::string in, out;
    size_t count;
  };
  const std::string R = "\xEF\xBF\xBD";
  std::vector<Case> cases = {
      {"ok", "ok", 0},
      {"\xFF", R, 1},
      {"a\x80"
       "b",
       "a" + R + "b", 1},
      {"\xE2\x82", R, 1},
      {"\xE2\x82x", R + "x", 1},
      {"\xF0\x80\x80", R + R + R, 3},
      {"\xF0\x9F\x98", R, 1},
      {"\xED\xA0\x80", R + R + R, 3},
      {"\xC0\xAF", R + R, 2},
      {"\xF4\x90\x80\x80", R + R + R + R, 4},
      {"\xE0\x9F\x80", R + R + R, 3},
      {"\xF0\x9F\x98\x80", "\xF0\x9F\x98\x80", 0},
      {"caf\xC3\xA9", "caf\xC3\xA9", 0},
      {"\xC3", R, 1},
      {"\xF5\x80", R + R, 2},
  };
  for (const auto& c : cases) {
    std::string s = c.in;
    EXPECT_EQ(repair_utf8(s), c.count) << c.in;
    EXPECT_EQ(s, c.out) << c.in;
    EXPECT_EQ(find_invalid_utf8(c.in) == kUtf8Valid, c.count == 0) << c.in;
  }
  EXPECT_EQ(find_invalid_utf8("abc\xC3\xA9\xFFz"), 5u);
}

TEST(DataUtf8, PolicyFailNamesTheRecord) {
  std::string t = "{\"text\": \"a\xFF\"}";
  std::string msg = error_of([&] { apply_utf8_policy(t, Utf8Policy::fail, "in.jsonl:7"); });
  EXPECT_TRUE(contains(msg, "in.jsonl:7: invalid UTF-8 (byte 0xFF at byte 11")) << msg;
  EXPECT_TRUE(contains(msg, "--invalid-utf8 repair")) << msg;
  EXPECT_EQ(apply_utf8_policy(t, Utf8Policy::repair, "x"), 1u);
  EXPECT_EQ(json::parse(t)["text"], "a\xEF\xBF\xBD");
}

TEST(DataReader, JsonlLinesBlankCrlfBom) {
  TempDir d;
  std::string p = d.file(
      "a.jsonl", "\xEF\xBB\xBF{\"text\": \"one\"}\r\n\n   \n{\"text\": \"two\"}\n{\"text\": \"three\"}");
  std::vector<std::string> where;
  auto recs = read_all(p, &where);
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(json::parse(recs[0].text)["text"], "one");
  EXPECT_EQ(recs[0].line, 1);
  EXPECT_EQ(recs[1].line, 4);
  EXPECT_EQ(recs[2].line, 5);
  EXPECT_EQ(recs[2].index, 2);
  EXPECT_EQ(where[1], p + ":4");
  RecordReader r(p);
  EXPECT_FALSE(r.is_json_array());
  EXPECT_FALSE(r.is_gzip());
}

TEST(DataReader, JsonlLongLinesAcrossBufferBoundaries) {
  TempDir d;
  std::string body;
  std::vector<std::string> texts;
  for (int i = 0; i < 40; ++i) {
    std::string t(size_t(50000 + i * 1000), char('a' + i % 26));
    texts.push_back(t);
    body += json({{"text", t}}).dump() + "\n";
  }
  for (const std::string& p : {d.file("big.jsonl", body), d.gz("big.jsonl.gz", body)}) {
    auto recs = read_all(p);
    ASSERT_EQ(recs.size(), texts.size()) << p;
    for (size_t i = 0; i < texts.size(); ++i) {
      EXPECT_EQ(json::parse(recs[i].text)["text"], texts[i]);
      EXPECT_EQ(recs[i].line, int64_t(i + 1));
    }
  }
}

TEST(DataReader, JsonArrayPrettyPrintedWithTrickyStrings) {
  TempDir d;
  std::string text = R"([
  {"text": "a ] } [ { , \" quote"},
  {
    "text": "line\nbreak",
    "nested": {"x": [1, 2, {"y": "]"}]}
  },
  {"text": "last"}
]
)";
  std::vector<std::string> where;
  auto recs = read_all(d.file("a.json", text), &where);
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(json::parse(recs[0].text)["text"], "a ] } [ { , \" quote");
  EXPECT_EQ(json::parse(recs[1].text)["nested"]["x"][2]["y"], "]");
  EXPECT_EQ(recs[1].line, 3);
  EXPECT_EQ(recs[2].line, 7);
  EXPECT_TRUE(contains(where[2], "a.json:7 (record 2)")) << where[2];
  // Same content gzipped, and under a misleading name.
  auto gz = read_all(d.gz("a.jsonl", text));
  ASSERT_EQ(gz.size(), 3u);
  EXPECT_EQ(gz[1].text, recs[1].text);
  RecordReader r(d.path + "/a.jsonl");
  EXPECT_TRUE(r.is_json_array());
  EXPECT_TRUE(r.is_gzip());
  EXPECT_TRUE(read_all(d.file("empty.json", "[ ]")).empty());
  EXPECT_TRUE(read_all(d.file("empty.jsonl", "")).empty());
}

TEST(DataReader, StructuralErrorsNameFileAndLine) {
  TempDir d;
  auto msg = error_of([&] { read_all(d.file("a.json", "[\n{\"text\": 1}\n{\"text\": 2}]")); });
  EXPECT_TRUE(contains(msg, "a.json:3: expected ',' or ']' after record 0")) << msg;
  msg = error_of([&] { read_all(d.file("b.json", "[{\"text\": 1},\n]")); });
  EXPECT_TRUE(contains(msg, "b.json:2: trailing ','")) << msg;
  msg = error_of([&] { read_all(d.file("c.json", "[{\"text\": 1},\n{\"text\": \"x}\n")); });
  EXPECT_TRUE(contains(msg, "c.json:2: unterminated string")) << msg;
  msg = error_of([&] { read_all(d.file("e.json", "[{\"text\": 1}")); });
  EXPECT_TRUE(contains(msg, "not closed")) << msg;
  msg = error_of([&] { read_all(d.file("f.json", "[{\"text\": 1}] x")); });
  EXPECT_TRUE(contains(msg, "after the closing ']'")) << msg;
  msg = error_of([&] { RecordReader r(d.path + "/missing.jsonl"); });
  EXPECT_TRUE(contains(msg, "input file not found")) << msg;
}

TEST(DataReader, TruncatedGzipIsAnError) {
  TempDir d;
  std::string body;
  for (int i = 0; i < 2000; ++i) body += json({{"text", "record " + std::to_string(i)}}).dump() + "\n";
  std::string p = d.gz("t.jsonl.gz", body);
  fs::resize_file(p, fs::file_size(p) / 2);
  auto msg = error_of([&] { read_all(p); });
  EXPECT_TRUE(contains(msg, "t.jsonl.gz")) << msg;
  EXPECT_TRUE(contains(msg, "truncated or damaged")) << msg;
}

TEST(DataReader, MalformedLineNamesFileLine) {
  TempDir d;
  std::string p = d.file("m.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"bad\"\n");
  RecordReader r(p);
  RawRecord rec;
  ASSERT_TRUE(r.next(rec));
  ASSERT_TRUE(r.next(rec));
  auto msg = error_of([&] { parse_json_record(rec.text, r.where(rec)); });
  EXPECT_TRUE(contains(msg, p + ":2: malformed JSON")) << msg;
}

// ---- formats ------------------------------------------------------------------------------------

TEST(DataFormats, Detect) {
  std::string why;
  EXPECT_EQ(detect_format(json::parse(R"({"instruction":"a","input":"","output":"b","text":"t"})"), &why),
            Format::alpaca);
  EXPECT_EQ(why, "has 'instruction'");
  EXPECT_EQ(detect_format(json::parse(R"({"conversations":[{"from":"human","value":"x"}]})")),
            Format::sharegpt);
  EXPECT_EQ(detect_format(json::parse(R"({"messages":[{"from":"human","value":"x"}]})")), Format::sharegpt);
  EXPECT_EQ(detect_format(json::parse(R"({"messages":[{"role":"user","content":"x"}]})")), Format::messages);
  EXPECT_EQ(detect_format(json::parse(R"({"text":"x"})")), Format::text);
  auto msg = error_of([&] { detect_format(json::parse(R"({"prompt":"x","completion":"y"})")); });
  EXPECT_TRUE(contains(msg, "(completion, prompt)")) << msg;
  EXPECT_TRUE(contains(msg, "--format")) << msg;
  EXPECT_THROW(parse_format("csv"), hs::Error);
  EXPECT_EQ(parse_format("auto"), std::nullopt);
  EXPECT_EQ(parse_format("sharegpt"), Format::sharegpt);
}

TEST(DataFormats, Alpaca) {
  Example ex = to_example(json::parse(R"({"instruction":"Do it","input":"ctx","output":"done",
      "system":"Be brief","history":[["q1","a1"]]})"),
                          Format::alpaca);
  EXPECT_EQ(ex.instruction, "Do it");
  EXPECT_EQ(ex.input, "ctx");
  EXPECT_EQ(ex.output, "done");
  ASSERT_EQ(ex.messages.size(), 3u);
  EXPECT_EQ(ex.messages[0].role, "system");
  EXPECT_EQ(ex.messages[1].content, "q1");
  EXPECT_EQ(ex.messages[2].role, "assistant");
  auto msg = error_of([&] { to_example(json::parse(R"({"instruction":"x"})"), Format::alpaca); });
  EXPECT_TRUE(contains(msg, "'output' is missing")) << msg;
  msg = error_of([&] { to_example(json::parse(R"({"instruction":3,"output":"y"})"), Format::alpaca); });
  EXPECT_TRUE(contains(msg, "'instruction' must be a string (got number)")) << msg;
}

TEST(DataFormats, AlpacaThroughChatmlTemplate) {
  auto tmpl = hs::tokenizer::ChatTemplate::named("chatml", {"", "<|im_end|>", "", ""});
  Example ex =
      to_example(json::parse(R"({"instruction":"Do it","input":"ctx","output":"done"})"), Format::alpaca);
  auto conv = to_conversation(ex, tmpl);
  ASSERT_EQ(conv.messages.size(), 2u);
  EXPECT_EQ(conv.messages[0].role, "user");
  EXPECT_EQ(conv.messages[0].content, "Do it\n\nctx");  // the template contract for non-alpaca families
  EXPECT_EQ(conv.messages[1].content, "done");
}

TEST(DataFormats, ShareGptVariants) {
  Example ex = to_example(json::parse(R"({"system":"S","conversations":[{"from":"human","value":"hi"},
      {"from":"gpt","value":"hello"},{"from":"user","value":"more"},{"from":"assistant","value":"ok"}]})"),
                          Format::sharegpt);
  ASSERT_EQ(ex.messages.size(), 5u);
  EXPECT_EQ(ex.messages[0].role, "system");
  EXPECT_EQ(ex.messages[1].role, "user");
  EXPECT_EQ(ex.messages[2].role, "assistant");
  EXPECT_EQ(ex.messages[4].content, "ok");
  ex = to_example(
      json::parse(R"({"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]})"),
      Format::sharegpt);
  ASSERT_EQ(ex.messages.size(), 2u);
  EXPECT_EQ(ex.messages[1].role, "assistant");
  auto msg = error_of([&] {
    to_example(
        json::parse(R"({"conversations":[{"from":"human","value":"a"},{"from":"narrator","value":"b"}]})"),
        Format::sharegpt);
  });
  EXPECT_TRUE(contains(msg, "conversations[1]: unknown role 'narrator'")) << msg;
  msg = error_of([&] { to_example(json::parse(R"({"conversations":"x"})"), Format::sharegpt); });
  EXPECT_TRUE(contains(msg, "must be a list")) << msg;
  msg = error_of([&] { to_example(json::parse(R"({"conversations":[]})"), Format::sharegpt); });
  EXPECT_TRUE(contains(msg, "no messages")) << msg;
}

TEST(DataFormats, MessagesWithReasoningAndParts) {
  Example ex = to_example(json::parse(R"({"messages":[{"role":"system","content":"S"},
      {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
      {"role":"assistant","content":"c","reasoning_content":"think"}]})"),
                          Format::messages);
  ASSERT_EQ(ex.messages.size(), 3u);
  EXPECT_EQ(ex.messages[1].content, "ab");
  EXPECT_EQ(ex.messages[2].reasoning, "think");
  ex = to_example(json::parse(R"({"messages":[{"role":"user","content":"q"},
      {"role":"assistant","content":"c","reasoning":"r"}]})"),
                  Format::messages);
  EXPECT_EQ(ex.messages[1].reasoning, "r");
  auto msg = error_of([&] {
    to_example(json::parse(R"({"messages":[{"role":"user","content":[{"type":"image","url":"x"}]}]})"),
               Format::messages);
  });
  EXPECT_TRUE(contains(msg, "'image' part")) << msg;
  msg = error_of([&] {
    to_example(json::parse(R"({"messages":[{"role":"function","content":"x"}]})"), Format::messages);
  });
  EXPECT_TRUE(contains(msg, "messages[0]: unknown role 'function'")) << msg;
  msg = error_of([&] { to_example(json::parse(R"([1,2])"), Format::messages); });
  EXPECT_TRUE(contains(msg, "not an object")) << msg;
}

TEST(DataFormats, Text) {
  EXPECT_EQ(to_example(json::parse(R"({"text":"hello"})"), Format::text).text, "hello");
  auto msg = error_of([&] { to_example(json::parse(R"({"txt":"hello"})"), Format::text); });
  EXPECT_TRUE(contains(msg, "'text' is missing")) << msg;
}

// ---- first pass over inputs ------------------------------------------------------------------------

TEST(DataScan, CountsDetectsAndHashes) {
  TempDir d;
  std::string a = d.file("a.jsonl", "{\"text\":\"x\"}\n\n{\"text\":\"y\"}\n");
  std::string b =
      d.gz("b.json.gz", R"([{"instruction":"i","output":"o"},{"instruction":"j","output":"p"},{}])");
  std::string c = d.file("c.jsonl", "{broken\n{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}\n");
  auto files = scan_inputs({a, b, c}, std::nullopt, Utf8Policy::repair);
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(files[0].records, 2);
  EXPECT_EQ(files[0].format, Format::text);
  EXPECT_EQ(files[1].records, 3);
  EXPECT_EQ(files[1].format, Format::alpaca);
  EXPECT_EQ(files[1].sha256, hs::io::sha256_hex(hs::io::read_file(b)));
  EXPECT_EQ(files[1].name, "b.json.gz");
  EXPECT_EQ(files[2].format, Format::messages);  // the malformed first line does not decide
  EXPECT_TRUE(contains(files[2].why, "line 2")) << files[2].why;
  auto given = scan_inputs({a}, Format::sharegpt, Utf8Policy::repair);
  EXPECT_EQ(given[0].format, Format::sharegpt);
  auto msg = error_of(
      [&] { scan_inputs({d.file("u.jsonl", "{\"prompt\":1}\n")}, std::nullopt, Utf8Policy::repair); });
  EXPECT_TRUE(contains(msg, "u.jsonl:1")) << msg;
}

TEST(DataScan, SharedDatasetsDetect) {
  HS_REQUIRE_TESTDATA();
  std::string dir = hs::test::testdata_dir() + "/datasets/";
  auto files =
      scan_inputs({dir + "alpaca_tiny.json", dir + "sharegpt_500.json"}, std::nullopt, Utf8Policy::fail);
  EXPECT_EQ(files[0].format, Format::alpaca);
  EXPECT_EQ(files[0].records, 100);  // the README: first 100 rows
  EXPECT_EQ(files[1].format, Format::sharegpt);
  EXPECT_EQ(files[1].records, 500);  // the README: 500 conversations
}

// ---- issue #10: every record accounted for ----------------------------------------------------------

namespace {
// Small realistic files of public formats (OASST messages, Axolotl conversation.json, glaive_toolcall).
std::string fixture(const std::string& name) {
  const char* src = std::getenv("HSLOTH_SOURCE");
  fs::path root = src ? fs::path(src) / "tests" : fs::path(__FILE__).parent_path().parent_path();
  return (root / "fixtures" / "inputs" / name).string();
}
}  // namespace

// A file of blank lines used to cost quadratic time (each 4 KiB read rescanned the whole blank prefix:
// 20 MiB took ~45 s in prep); the blank prefix is now dropped as it is read. The bound is generous (a
// linear scan takes well under a second); the line numbers after the blank prefix must stay right.
TEST(DataReader, BlankLinesCostLinearTime) {
  TempDir d;
  const std::string blank(20 << 20, '\n');
  std::string p = d.file("blank.jsonl", blank);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(read_all(p).empty());
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(s, 10.0) << "20 MiB of blank lines took " << s << " s";
  auto recs = read_all(d.file("late.jsonl", std::string(3 << 20, '\n') + " \r\n{\"text\": \"x\"}\n"));
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].line, (3 << 20) + 2);
  auto arr =
      read_all(d.file("late.json", std::string(1 << 20, '\n') + "[{\"text\": \"x\"},\n{\"text\": \"y\"}]"));
  ASSERT_EQ(arr.size(), 2u);
  EXPECT_EQ(arr[1].line, (1 << 20) + 2);
}

// Axolotl-style conversation.json: one pretty-printed object is one record, not "malformed JSON".
TEST(DataReader, SingleObjectFileIsOneRecord) {
  std::string p = fixture("axolotl_conversation.json");
  std::vector<std::string> where;
  auto recs = read_all(p, &where);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].line, 1);
  EXPECT_EQ(where[0], p + ":1");
  Example ex = to_example(parse_json_record(recs[0].text, where[0]), Format::sharegpt);
  ASSERT_EQ(ex.messages.size(), 5u);
  EXPECT_EQ(ex.messages[4].content, "Green, orange and purple.");
  auto files = scan_inputs({p}, std::nullopt, Utf8Policy::fail);
  EXPECT_EQ(files[0].records, 1);
  EXPECT_EQ(files[0].format, Format::sharegpt);
  TempDir d;
  auto one = read_all(
      d.gz("one.json.gz", "\n  {\n  \"messages\": [\n {\"role\": \"user\", \"content\": \"}\"}]\n}\n\n"));
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].line, 2);
  auto msg = error_of([&] { read_all(d.file("two.json", "{\n  \"text\": \"a\"\n}\n{\"text\": \"b\"}\n")); });
  EXPECT_TRUE(contains(msg, "two.json:4: unexpected text after the JSON object that starts at line 1"))
      << msg;
  msg = error_of([&] { read_all(d.file("open.json", "{\n  \"text\": \"a\",\n")); });
  EXPECT_TRUE(contains(msg, "open.json:1: record 0 is not closed")) << msg;
  // A JSONL file whose first line is merely broken stays JSONL (the bad line is one malformed record).
  EXPECT_EQ(read_all(d.file("b.jsonl", "{\"text\": \"a\"\n{\"text\": \"b\"}\n")).size(), 2u);
}

TEST(DataFormats, PreferenceDataIsRefusedByName) {
  HS_REQUIRE_TESTDATA();
  std::string p = hs::test::testdata_dir() + "/datasets/dpo_en_300.json";
  auto msg = error_of([&] { scan_inputs({p}, std::nullopt, Utf8Policy::repair); });
  EXPECT_TRUE(contains(msg, "dpo_en_300.json:")) << msg;
  EXPECT_TRUE(contains(msg, "DPO / preference data is not supported yet")) << msg;
  // Given --format sharegpt, every record is still refused, never read without chosen/rejected.
  RecordReader r(p);
  RawRecord rec;
  int64_t n = 0;
  while (r.next(rec)) {
    ++n;
    auto m = error_of([&] { to_example(parse_json_record(rec.text, r.where(rec)), Format::sharegpt); });
    if (!contains(m, "DPO / preference data is not supported yet"))
      ADD_FAILURE() << r.where(rec) << ": " << m;
  }
  EXPECT_EQ(n, 300);
}

TEST(DataFormats, OasstMessageTreesAreRefusedNotText) {
  std::string p = fixture("oasst_en_messages.jsonl");
  auto msg = error_of([&] { scan_inputs({p}, std::nullopt, Utf8Policy::repair); });
  EXPECT_TRUE(contains(msg, "oasst_en_messages.jsonl:1")) << msg;
  EXPECT_TRUE(contains(msg, "OpenAssistant (OASST) message trees are not supported")) << msg;
  EXPECT_TRUE(contains(msg, "convert the trees to conversations")) << msg;
  // Not even as --format text.
  msg = error_of([&] {
    to_example(json::parse(R"({"message_id":"a","parent_id":null,"text":"hi","role":"prompter"})"),
               Format::text);
  });
  EXPECT_TRUE(contains(msg, "OpenAssistant")) << msg;
  // `text` needs a text record: a lone message with text is not one.
  msg = error_of([&] { detect_format(json::parse(R"({"text":"hi","role":"user"})")); });
  EXPECT_TRUE(contains(msg, "'text' and 'role'")) << msg;
  EXPECT_EQ(detect_format(json::parse(R"({"text":"hi","meta":{"source":"x"}})")), Format::text);
}

TEST(DataFormats, ContentPartsTextOrValue) {
  Example ex =
      to_example(json::parse(R"({"conversations":[{"from":"human","value":[{"type":"text","value":"a"},
      {"type":"text","text":"b"}, "c"]},{"from":"gpt","value":[{"type":"text","value":"d"}]}]})"),
                 Format::sharegpt);
  ASSERT_EQ(ex.messages.size(), 2u);
  EXPECT_EQ(ex.messages[0].content, "abc");
  EXPECT_EQ(ex.messages[1].content, "d");
}

// LLaMA-Factory glaive_toolcall: function_call -> assistant tool_calls, observation -> tool, "tools" (a JSON
// string) -> schemas wrapped as transformers expects; key order as in the file.
TEST(DataFormats, ShareGptToolRolesAndTools) {
  std::string p = fixture("glaive_toolcall.json");
  auto files = scan_inputs({p}, std::nullopt, Utf8Policy::fail);
  EXPECT_EQ(files[0].format, Format::sharegpt);
  EXPECT_EQ(files[0].records, 3);
  auto recs = read_all(p);
  Example ex = to_example(parse_json_record(recs[0].text, "r0"), Format::sharegpt);
  ASSERT_EQ(ex.messages.size(), 4u);
  EXPECT_EQ(ex.messages[1].role, "assistant");
  EXPECT_EQ(ex.messages[1].content, "");
  ASSERT_EQ(ex.messages[1].tool_calls.size(), 1u);
  EXPECT_EQ(ex.messages[1].tool_calls[0].name, "generate_password");
  EXPECT_EQ(ex.messages[1].tool_calls[0].arguments, R"({"length":12,"include_symbols":true})");
  EXPECT_EQ(ex.messages[2].role, "tool");
  EXPECT_EQ(ex.messages[2].content, R"({"password": "k7#Qp2!vZx9L"})");
  ASSERT_EQ(ex.tools.size(), 1u);
  EXPECT_TRUE(ex.tools[0].starts_with(
      R"({"type":"function","function":{"name":"generate_password","description":"Generate a random password",)"))
      << ex.tools[0];
  EXPECT_TRUE(to_example(parse_json_record(recs[2].text, "r2"), Format::sharegpt).tools.empty());  // "[]"
  // OpenAI-style messages: tool_calls objects, null content, tools as a list (already wrapped).
  ex = to_example(parse_json_record(R"({"messages":[{"role":"user","content":"q"},
      {"role":"assistant","content":null,"tool_calls":[{"type":"function","function":{"name":"f","arguments":{"z":1,"a":2}}}]},
      {"role":"tool","content":"3"},{"role":"assistant","content":"3!"}],
      "tools":[{"type":"function","function":{"name":"f","parameters":{}}}]})",
                                    "m"),
                  Format::messages);
  ASSERT_EQ(ex.messages[1].tool_calls.size(), 1u);
  EXPECT_EQ(ex.messages[1].tool_calls[0].arguments, R"({"z":1,"a":2})");
  EXPECT_EQ(ex.tools[0], R"({"type":"function","function":{"name":"f","parameters":{}}})");
  auto msg = error_of([&] {
    to_example(json::parse(R"({"conversations":[{"from":"function_call","value":"not json"}]})"),
               Format::sharegpt);
  });
  EXPECT_TRUE(contains(msg, "conversations[0]: is a string that is not valid JSON")) << msg;
  // A template without tool calling refuses the record by name.
  auto chatml = hs::tokenizer::ChatTemplate::named("chatml", {"", "<|im_end|>", "", ""});
  Example tool_ex = to_example(parse_json_record(recs[1].text, "r1"), Format::sharegpt);
  msg = error_of([&] { chatml.render(to_conversation(tool_ex, chatml)); });
  EXPECT_TRUE(contains(msg, "chat template 'chatml'")) << msg;
  EXPECT_TRUE(contains(msg, "no tool calling")) << msg;
}
