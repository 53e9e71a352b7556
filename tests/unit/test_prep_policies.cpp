// Prep record policies with a byte tokenizer (one token per byte, offsets [i, i+1), BOS = 1 when special
// tokens are added, EOS = 2), so every expected count and mask follows from the text alone: loss masks
// (full, response, last turn only) against the chat template's documented spans, too long (drop and
// truncate), empty, no trainable token, malformed (fail and skip), invalid UTF-8 (repair and fail), and
// the balance input records = written + skips over a whole run.
#include <filesystem>

#include "core/error.h"
#include "data_tools/prep.h"
#include "io/file.h"
#include "support/test_support.h"

namespace fs = std::filesystem;
using namespace hs::data_tools;
using nlohmann::json;

namespace {

constexpr int32_t kBos = 1, kEos = 2;

hs::tokenizer::Encoding byte_encode(std::string_view text, bool add_special) {
  hs::tokenizer::Encoding e;
  if (add_special) {
    e.ids.push_back(kBos);
    e.offsets.push_back({0, 0});
  }
  for (size_t i = 0; i < text.size(); ++i) {
    e.ids.push_back(int32_t(static_cast<unsigned char>(text[i])) + 3);
    e.offsets.push_back({uint32_t(i), uint32_t(i + 1)});
  }
  return e;
}

std::string decode_masked(const RecordProcessor::Tokens& t) {
  std::string s;
  for (size_t i = 0; i < t.ids.size(); ++i)
    if (t.mask[i]) s += char(t.ids[i] - 3);
  return s;
}

const hs::tokenizer::ChatTemplate& chatml() {
  static auto t = hs::tokenizer::ChatTemplate::named("chatml", {"", "<|im_end|>", "", ""});
  return t;
}

RecordProcessor make(PrepOptions o) { return RecordProcessor({byte_encode, kEos, &chatml()}, o); }

const char* kTwoTurns = R"({"messages":[{"role":"system","content":"S"},{"role":"user","content":"q1"},
  {"role":"assistant","content":"a1"},{"role":"user","content":"q2"},{"role":"assistant","content":"a2"}]})";

struct TempDir {
  std::string path = hs::test::temp_dir("hs-prep-policies");
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace

TEST(PrepMask, ResponseAllTurnsLastTurnAndFull) {
  PrepOptions o;
  o.loss = LossPolicy::response;
  // chatml's documented trainable span: CONTENT<|im_end|> of each assistant turn.
  auto t = make(o).tokenize(json::parse(kTwoTurns), Format::messages);
  EXPECT_EQ(decode_masked(t), "a1<|im_end|>a2<|im_end|>");
  EXPECT_EQ(t.mask[0], 0);
  o.last_turn_only = true;
  t = make(o).tokenize(json::parse(kTwoTurns), Format::messages);
  EXPECT_EQ(decode_masked(t), "a2<|im_end|>");
  o.loss = LossPolicy::full;
  o.last_turn_only = false;
  t = make(o).tokenize(json::parse(kTwoTurns), Format::messages);
  std::string all;
  for (int32_t id : t.ids) all += char(id - 3);
  EXPECT_EQ(decode_masked(t), all.substr(1));  // everything but the first token
  EXPECT_EQ(t.mask[0], 0);
}

TEST(PrepMask, OverlapRule) {
  // Tokens [0,3) [3,5) [5,9) [9,9) and a span [4,6): the two tokens touching it are trained, the empty
  // range never, the first token never.
  std::vector<std::pair<uint32_t, uint32_t>> offsets = {{0, 3}, {3, 5}, {5, 9}, {9, 9}};
  auto m = response_mask(offsets, {{{4, 6}}}, false);
  EXPECT_EQ(m, (std::vector<uint8_t>{0, 1, 1, 0}));
  m = response_mask(offsets, {{{0, 2}}, {{9, 9}}}, false);
  EXPECT_EQ(m, (std::vector<uint8_t>{0, 0, 0, 0}));
  m = response_mask(offsets, {{{0, 9}}, {{5, 6}}}, true);
  EXPECT_EQ(m, (std::vector<uint8_t>{0, 0, 1, 0}));
}

TEST(PrepText, SpecialTokensAndEosFullLoss) {
  PrepOptions o;  // response by default: text records are still trained in full
  auto t = make(o).tokenize(json::parse(R"({"text":"hey"})"), Format::text);
  EXPECT_EQ(t.ids, (std::vector<int32_t>{kBos, 'h' + 3, 'e' + 3, 'y' + 3, kEos}));
  EXPECT_EQ(t.mask, (std::vector<uint8_t>{0, 1, 1, 1, 1}));
}

TEST(PrepPolicies, TooLongDropAndTruncate) {
  PrepOptions o;
  o.max_len = 6;
  std::string rec = R"({"text":"abcdefgh"})";  // BOS + 8 + EOS = 10 tokens
  hs::data::SampleSet out;
  PrepCounts c;
  std::string text = rec;
  EXPECT_FALSE(make(o).process(text, Format::text, "f:1", 0, out, c));
  EXPECT_EQ(c.too_long, 1);
  o.too_long = TooLongPolicy::truncate;
  text = rec;
  EXPECT_TRUE(make(o).process(text, Format::text, "f:2", 1, out, c));
  EXPECT_EQ(c.truncated, 1);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out.length(0), 6);
  EXPECT_EQ(out.ids(0)[5], 'e' + 3);
  EXPECT_EQ(c.records, 2);
  EXPECT_EQ(c.written, 1);
  EXPECT_EQ(c.tokens, 6);
  EXPECT_EQ(c.trained, 5);
  EXPECT_THROW(RecordProcessor({byte_encode, kEos, nullptr}, PrepOptions{.max_len = 1}), hs::Error);
}

TEST(PrepPolicies, TruncationThatRemovesEveryTargetIsNoTrainable) {
  PrepOptions o;
  o.max_len = 10;
  o.too_long = TooLongPolicy::truncate;
  std::string text = kTwoTurns;  // the assistant text lies far beyond 10 bytes
  hs::data::SampleSet out;
  PrepCounts c;
  EXPECT_FALSE(make(o).process(text, Format::messages, "f:1", 0, out, c));
  EXPECT_EQ(c.no_trainable, 1);
  EXPECT_EQ(c.truncated, 1);
}

TEST(PrepPolicies, EmptyAndNoTrainable) {
  PrepOptions o;
  hs::data::SampleSet out;
  PrepCounts c;
  // Text "" -> BOS + EOS = 2 tokens: kept. With no EOS in the tokenizer: 1 token -> empty.
  std::string t1 = R"({"text":""})";
  EXPECT_FALSE(RecordProcessor({byte_encode, -1, nullptr}, o).process(t1, Format::text, "f:1", 0, out, c));
  EXPECT_EQ(c.empty, 1);
  // A conversation with no assistant turn has nothing to train under `response`.
  std::string t2 = R"({"messages":[{"role":"user","content":"only a question"}]})";
  EXPECT_FALSE(make(o).process(t2, Format::messages, "f:2", 1, out, c));
  EXPECT_EQ(c.no_trainable, 1);
  EXPECT_EQ(c.skipped(), 2);
}

TEST(PrepPolicies, MalformedFailNamesFileLineAndSkipCounts) {
  PrepOptions o;
  hs::data::SampleSet out;
  PrepCounts c;
  std::string bad = R"({"messages":[{"role":"narrator","content":"x"}]})";
  try {
    make(o).process(bad, Format::messages, "data.jsonl:17", 0, out, c);
    FAIL() << "expected an error";
  } catch (const hs::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("data.jsonl:17: messages[0]: unknown role 'narrator'"), std::string::npos) << msg;
  }
  std::string broken = "{\"text\": ";
  try {
    make(o).process(broken, Format::text, "data.jsonl:18", 1, out, c);
    FAIL() << "expected an error";
  } catch (const hs::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("data.jsonl:18: malformed JSON"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--on-error skip"), std::string::npos) << msg;
  }
  o.skip_errors = true;
  PrepCounts c2;
  bad = R"({"messages":[{"role":"narrator","content":"x"}]})";
  broken = "{\"text\": ";
  std::string wrong_type = R"({"text": 5})";
  EXPECT_FALSE(make(o).process(bad, Format::messages, "f:1", 0, out, c2));
  EXPECT_FALSE(make(o).process(broken, Format::text, "f:2", 1, out, c2));
  EXPECT_FALSE(make(o).process(wrong_type, Format::text, "f:3", 2, out, c2));
  EXPECT_EQ(c2.malformed, 3);
  EXPECT_EQ(c2.records, 3);
  EXPECT_EQ(out.size(), 0u);
}

TEST(PrepPolicies, TemplateRejectionIsMalformed) {
  // llama2 requires alternating user/assistant: two user turns in a row are the record's fault.
  auto llama2 = hs::tokenizer::ChatTemplate::named("llama2", {"<s>", "</s>", "", ""});
  PrepOptions o;
  o.skip_errors = true;
  RecordProcessor p({byte_encode, kEos, &llama2}, o);
  std::string rec = R"({"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]})";
  hs::data::SampleSet out;
  PrepCounts c;
  EXPECT_FALSE(p.process(rec, Format::messages, "f:9", 0, out, c));
  EXPECT_EQ(c.malformed, 1);
}

TEST(PrepPolicies, InvalidUtf8RepairOrFail) {
  PrepOptions o;
  hs::data::SampleSet out;
  PrepCounts c;
  std::string rec =
      "{\"text\":\"a\xFF"
      "b\"}";
  EXPECT_TRUE(make(o).process(rec, Format::text, "f:1", 0, out, c));
  EXPECT_EQ(c.utf8_repaired, 1);
  // BOS a U+FFFD(3 bytes) b EOS
  std::vector<int32_t> want = {kBos, 'a' + 3, 0xEF + 3, 0xBF + 3, 0xBD + 3, 'b' + 3, kEos};
  EXPECT_TRUE(std::ranges::equal(out.ids(0), want));
  o.utf8 = Utf8Policy::fail;
  o.skip_errors = true;  // --on-error skip does not cover encoding: fail means fail
  rec =
      "{\"text\":\"a\xFF"
      "b\"}";
  EXPECT_THROW(make(o).process(rec, Format::text, "f:2", 1, out, c), hs::Error);
}

TEST(PrepRun, BalanceOverFilesAndRanks) {
  TempDir d;
  std::string jsonl;
  jsonl += R"({"text":"hello world"})"
           "\n";                                                   // written
  jsonl += json({{"text", std::string(300, 'x')}}).dump() + "\n";  // too long
  jsonl += "{oops\n";                                              // malformed
  jsonl += R"({"text":""})"
           "\n";                              // empty: BOS only
  jsonl += "{\"text\":\"bad \xC3 utf8\"}\n";  // repaired, written
  std::string conv = R"([{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]},
    {"messages":[{"role":"user","content":"no answer"}]},
    {"messages":[{"role":"user","content":"q2"},{"role":"assistant","content":"a2"}]}])";
  hs::io::write_file_atomic(d.path + "/t.jsonl", jsonl);
  hs::io::write_file_atomic(d.path + "/c.json", conv);
  PrepOptions o;
  o.max_len = 200;  // a chatml render of a short exchange is ~160 bytes
  o.skip_errors = true;
  auto inputs = scan_inputs({d.path + "/t.jsonl", d.path + "/c.json"}, std::nullopt, o.utf8);
  ASSERT_EQ(inputs[0].records + inputs[1].records, 8);
  RecordProcessor p({[](std::string_view t, bool s) { return byte_encode(t, s); }, -1, &chatml()}, o);
  // One rank, then three "ranks" run one after the other: same samples, same counts.
  RankResult one = run_records(inputs, p, 0, 1);
  PrepCounts total;
  hs::data::SampleSet merged;
  for (int r = 0; r < 3; ++r) {
    RankResult part = run_records(inputs, p, r, 3);
    total.add(part.counts);
    merged.append(part.samples);
  }
  for (const PrepCounts& c : {one.counts, total}) {
    EXPECT_EQ(c.records, 8);
    EXPECT_EQ(c.written, 2 + 2);
    EXPECT_EQ(c.too_long, 1);
    EXPECT_EQ(c.malformed, 1);
    EXPECT_EQ(c.empty, 1);  // "" with BOS only (no EOS): 1 token
    EXPECT_EQ(c.no_trainable, 1);
    EXPECT_EQ(c.utf8_repaired, 1);
    EXPECT_EQ(c.records, c.written + c.skipped());
  }
  EXPECT_NE(one.counts.table().find("(balanced)"), std::string::npos);
  ASSERT_EQ(merged.size(), one.samples.size());
  auto o1 = one.samples.sorted_order(), o2 = merged.sorted_order();
  for (size_t i = 0; i < o1.size(); ++i) {
    EXPECT_EQ(one.samples.key(o1[i]), merged.key(o2[i]));
    EXPECT_TRUE(std::ranges::equal(one.samples.ids(o1[i]), merged.ids(o2[i])));
  }
  EXPECT_EQ(PrepCounts::from_json(total.to_json()).to_json(), total.to_json());
}
