// Prep's limits and the inputs fuzzing found (issue #10):
//  - encode_limited (what prep encodes of a record under --max-len) gives exactly the first tokens of a
//    full encode, on the real tokenizers and diverse text (the full encode is itself checked against HF);
//  - a large record costs a small multiple of its size in memory: the peak RSS of `hsloth prep` on a 16 MB
//    record, measured by the kernel (wait4), and a run under an address-space limit (RLIMIT_DATA) that
//    the old pipeline (~15-40x a record) cannot pass;
//  - running out of memory is "out of memory while processing FILE:LINE", never a malformed (skipped)
//    record;
//  - --max-len defaults to the tokenizer's model_max_length when it sets a real one;
//  - a full disk (a small tmpfs in a private mount namespace) is one clear error with the path, and
//    nothing is left in --out;
//  - tokenizer files fuzzing broke: 1e99999 in tokenizer_config.json, a vocab id far beyond the vocab.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <new>
#include <random>
#include <span>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/shard_index.h"
#include "data_tools/prep.h"
#include "io/file.h"
#include "support/test_support.h"
#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace hs::data_tools;

namespace {

struct Env {
  std::string dir = hs::test::temp_dir("hs-prep-limits");
  ~Env() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string tokenizer_dir(const std::string& name) {
  return hs::test::testdata_dir() + "/tokenizers/" + name;
}

// $HSLOTH_BIN, else the hsloth beside this test's build folder (build/tests/x -> build/hsloth).
std::string binary() {
  std::string env = hs::test::hsloth_bin();
  if (!env.empty()) return env;
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : (self.parent_path().parent_path() / "hsloth").string();
}

struct RunResult {
  int code = -1;
  long max_rss_kb = 0;
  std::string output;
};

// Runs `sh -c "exec <cmd>"` (so the measured process is the command itself) with an optional limit on
// its data segment and anonymous mappings (RLIMIT_DATA: what malloc can get), and returns its exit code,
// peak RSS (from wait4) and output.
RunResult run(const std::string& cmd, const std::string& log, rlim_t data_limit = RLIM_INFINITY) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (data_limit != RLIM_INFINITY) {
      rlimit r{data_limit, data_limit};
      ::setrlimit(RLIMIT_DATA, &r);
    }
    std::string line = "exec " + cmd + " > " + log + " 2>&1";
    ::execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  RunResult r;
  int status = 0;
  rusage ru{};
  if (pid < 0 || ::wait4(pid, &status, 0, &ru) != pid) return r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.max_rss_kb = ru.ru_maxrss;
  std::error_code ec;
  if (fs::exists(log, ec)) r.output = hs::io::read_file(log);
  return r;
}

// Diverse text: the tokenizer test vectors (accents, CJK, emoji, whitespace runs, digits, code) in a
// seeded random order until `bytes`.
std::string diverse_text(size_t bytes, uint32_t seed) {
  std::vector<std::string> parts;
  for (const char* f : {"gpt-2.inp", "llama-spm.inp", "qwen2.inp"}) {
    std::string all = hs::io::read_file(hs::test::testdata_dir() + "/tokenizer-vectors/" + f);
    size_t at = 0;
    const std::string sep = "\n__ggml_vocab_test__\n";
    while (at < all.size()) {
      size_t e = all.find(sep, at);
      if (e == std::string::npos) e = all.size();
      if (e > at) parts.push_back(all.substr(at, e - at));
      at = e + sep.size();
    }
  }
  std::mt19937 rng(seed);
  std::string out;
  while (out.size() < bytes) {
    out += parts[rng() % parts.size()];
    out += (rng() % 3 == 0) ? "\n" : " ";
  }
  return out;
}

// Words and sentences: what a long document looks like (cheap to generate at 32 MB).
std::string prose(size_t bytes) {
  static const char* words[] = {"the",    "model", "learns", "from", "data",    "while", "every", "token",
                                "counts", "in",    "a",      "long", "record,", "and",   "loss",  "falls."};
  std::mt19937 rng(7);
  std::string out;
  out.reserve(bytes + 16);
  while (out.size() < bytes) {
    out += words[rng() % 16];
    out += (rng() % 40 == 0) ? "\n" : " ";
  }
  out.resize(bytes);
  return out;
}

void write_text_records(const std::string& path, const std::vector<std::string>& texts) {
  std::ofstream f(path, std::ios::binary);
  for (const auto& t : texts) f << json({{"text", t}}).dump() << "\n";
}

}  // namespace

// ---- encode_limited: exact first tokens ------------------------------------------------------------

TEST(PrepLimits, EncodeLimitedGivesExactlyTheFirstTokensOfAFullEncode) {
  HS_REQUIRE_TESTDATA();
  for (const char* name : {"qwen2.5", "llama2"}) {
    auto tok = hs::tokenizer::Tokenizer::from_file(tokenizer_dir(name));
    EncodeFn enc = [&tok](std::string_view t, bool special) { return tok.encode(t, special); };
    for (uint32_t seed : {1u, 2u, 3u}) {
      const std::string text = diverse_text(120'000, seed);
      for (bool special : {false, true}) {
        const auto full = tok.encode(text, special);
        for (int64_t limit : {int64_t(1), int64_t(37), int64_t(500), int64_t(3000), int64_t(9000),
                              int64_t(full.ids.size()) - 1, int64_t(full.ids.size())}) {
          // A 1 KiB first prefix (prep uses 256 KiB) so that several prefixes and cuts are exercised.
          LimitedEncoding le = encode_limited(enc, text, special, limit, 1024);
          SCOPED_TRACE(std::string(name) + " seed " + std::to_string(seed) + " limit " +
                       std::to_string(limit));
          if (le.complete) {
            EXPECT_EQ(le.enc.ids, full.ids);  // the whole encoding (it may hold more than limit tokens)
            continue;
          }
          ASSERT_GT(int64_t(le.enc.ids.size()), limit);
          ASSERT_LE(le.enc.ids.size(), full.ids.size());
          for (size_t i = 0; i < le.enc.ids.size(); ++i) {
            ASSERT_EQ(le.enc.ids[i], full.ids[i]) << "token " << i;
            ASSERT_EQ(le.enc.offsets[i], full.offsets[i]) << "token " << i;
          }
        }
        // The whole text fits: a full encode, complete.
        LimitedEncoding all = encode_limited(enc, text, special, int64_t(full.ids.size()) + 10, 1024);
        EXPECT_TRUE(all.complete);
        EXPECT_EQ(all.enc.ids, full.ids);
      }
    }
  }
}

TEST(PrepLimits, TruncatedRecordEqualsTheFullEncodeCut) {
  // Through the record processor, chat path (response mask from offsets) and text path (BOS, EOS).
  HS_REQUIRE_TESTDATA();
  auto tok = hs::tokenizer::Tokenizer::from_file(tokenizer_dir("qwen2.5"));
  auto chat = hs::tokenizer::ChatTemplate::named("chatml", {"", "<|im_end|>", "", ""});
  EncodeFn enc = [&tok](std::string_view t, bool special) { return tok.encode(t, special); };
  const std::string answer = diverse_text(60'000, 9);
  const json rec = {{"messages",
                     {{{"role", "user"}, {"content", "Tell me everything."}},
                      {{"role", "assistant"}, {"content", answer}}}}};
  PrepOptions unlimited;
  RecordProcessor::Tokens full =
      RecordProcessor({enc, tok.specials().eos, &chat}, unlimited).tokenize(rec, Format::messages);
  for (int64_t max_len : {64, 2000, 9000}) {
    PrepOptions o;
    o.max_len = max_len;
    o.too_long = TooLongPolicy::truncate;
    o.min_prefix_bytes = 2048;
    RecordProcessor p({enc, tok.specials().eos, &chat}, o);
    std::string text = rec.dump();
    hs::data::SampleSet out;
    PrepCounts c;
    ASSERT_TRUE(p.process(text, Format::messages, "f:1", 0, out, c));
    EXPECT_EQ(c.truncated, 1);
    ASSERT_EQ(int64_t(out.length(0)), max_len);
    EXPECT_TRUE(std::ranges::equal(out.ids(0), std::span(full.ids).first(size_t(max_len))));
    EXPECT_TRUE(std::ranges::equal(out.mask(0), std::span(full.mask).first(size_t(max_len))));
  }
}

// ---- out of memory ---------------------------------------------------------------------------------

TEST(PrepLimits, OutOfMemoryIsNeverAMalformedRecord) {
  // Before: std::bad_alloc was caught as "this record's fault", counted as malformed with --on-error skip.
  EncodeFn starving = [](std::string_view, bool) -> hs::tokenizer::Encoding { throw std::bad_alloc(); };
  PrepOptions o;
  o.skip_errors = true;
  RecordProcessor p({starving, 2, nullptr}, o);
  std::string rec = R"({"text":"a record the machine has no memory for"})";
  const size_t bytes = rec.size();
  hs::data::SampleSet out;
  PrepCounts c;
  try {
    p.process(rec, Format::text, "data.jsonl:3", 2, out, c);
    FAIL() << "no error";
  } catch (const hs::Error& e) {
    std::string msg = e.what();
    EXPECT_TRUE(contains(msg, "out of memory while processing data.jsonl:3 (input record 2, " +
                                  std::to_string(bytes) + " bytes)"))
        << msg;
    EXPECT_TRUE(contains(msg, "hint: pass --max-len")) << msg;
    EXPECT_FALSE(contains(msg, "malformed")) << msg;
  }
  EXPECT_EQ(c.malformed, 0);
  EXPECT_EQ(c.skipped(), 0);
}

// ---- the binary: memory, --max-len default, full disk -----------------------------------------------

#define REQUIRE_BINARY()                                                                                    \
  do {                                                                                                      \
    HS_REQUIRE_TESTDATA();                                                                                  \
    if (binary().empty() || !fs::exists(binary())) GTEST_SKIP() << "hsloth binary not built ($HSLOTH_BIN)"; \
  } while (0)

TEST(PrepLimitsCli, LargeRecordMemoryIsASmallMultipleOfItsSize) {
  REQUIRE_BINARY();
  Env env;
  constexpr size_t kRecord = 16u << 20;
  write_text_records(env.dir + "/big.jsonl", {prose(kRecord), "a short one to keep"});
  write_text_records(env.dir + "/small.jsonl", {"a short one to keep", "and another"});
  // The Llama-2 tokenizer (SentencePiece-style normalizers) was the worst case: ~38x a record's size.
  const std::string base = binary() + " prep --tokenizer " + tokenizer_dir("llama2") + " --max-len 4096 ";
  // The smallest data limit (128 MiB steps) under which prep runs at all on a tiny input: libraries,
  // the tokenizer, MPI. Machines differ, so it is measured here.
  rlim_t floor = 0;
  RunResult small;
  for (rlim_t mib = 640; mib <= 6144; mib += 128) {
    fs::remove_all(env.dir + "/o-small");
    small = run(base + "--input " + env.dir + "/small.jsonl --out " + env.dir + "/o-small",
                env.dir + "/s.log", mib << 20);
    if (small.code == 0) {
      floor = mib << 20;
      break;
    }
  }
  if (floor == 0) GTEST_SKIP() << "prep does not start under a 6 GiB data limit here: " << small.output;

  // 128 MiB over that floor plus 20x the record. The old pipeline needed ~38x and failed here.
  const rlim_t limit = floor + (rlim_t(128) << 20) + 20 * rlim_t(kRecord);
  RunResult big =
      run(base + "--too-long truncate --input " + env.dir + "/big.jsonl --out " + env.dir + "/o-big",
          env.dir + "/b.log", limit);
  ASSERT_EQ(big.code, 0) << big.output;
  EXPECT_TRUE(contains(big.output, "kept, truncated                       1")) << big.output;
  auto idx = hs::data::ShardIndex::open(env.dir + "/o-big");
  ASSERT_EQ(idx.num_samples(), 2);
  EXPECT_EQ(idx.lengths().back(), 4096);
  // And the peak RSS the kernel measured: beyond a tiny run's, at most 8x the record (it was ~38x).
  const double extra = double(big.max_rss_kb - small.max_rss_kb) * 1024.0;
  EXPECT_LT(extra, 8.0 * double(kRecord))
      << "peak RSS " << big.max_rss_kb << " kB vs " << small.max_rss_kb << " kB for a tiny input";

  // --max-len 0 must encode the whole record, which does not fit under the same limit: that is out of
  // memory, named with the record, even with --on-error skip, and never "malformed" or "a bug".
  RunResult oom =
      run(base + "--max-len 0 --on-error skip --input " + env.dir + "/big.jsonl --out " + env.dir + "/o-oom",
          env.dir + "/o.log", limit);
  EXPECT_EQ(oom.code, 1) << oom.output;
  EXPECT_TRUE(
      contains(oom.output, "out of memory while processing " + env.dir + "/big.jsonl:1 (input record 0, "))
      << oom.output;
  EXPECT_FALSE(contains(oom.output, "malformed record")) << oom.output;
  EXPECT_FALSE(contains(oom.output, "this is a bug")) << oom.output;
  EXPECT_FALSE(fs::exists(env.dir + "/o-oom/manifest.json"));
}

TEST(PrepLimitsCli, MaxLenDefaultsToTheTokenizersModelMaxLength) {
  REQUIRE_BINARY();
  Env env;
  // tinyllama's tokenizer_config.json says model_max_length 2048; llama2's says 1e30 ("unset").
  write_text_records(env.dir + "/in.jsonl", {prose(30'000), "short"});
  RunResult r = run(binary() + " prep --tokenizer " + tokenizer_dir("tinyllama") + " --input " + env.dir +
                        "/in.jsonl --out " + env.dir + "/a",
                    env.dir + "/a.log");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "--max-len 2048 (the tokenizer's model_max_length")) << r.output;
  json m = json::parse(hs::io::read_file(env.dir + "/a/manifest.json"));
  EXPECT_EQ(m["max_len"], 2048);
  EXPECT_EQ(m["prep"]["skipped"]["too_long"], 1);
  // --max-len 0 still means no limit.
  r = run(binary() + " prep --max-len 0 --tokenizer " + tokenizer_dir("tinyllama") + " --input " + env.dir +
              "/in.jsonl --out " + env.dir + "/b",
          env.dir + "/b.log");
  ASSERT_EQ(r.code, 0) << r.output;
  m = json::parse(hs::io::read_file(env.dir + "/b/manifest.json"));
  EXPECT_EQ(m["max_len"], 0);
  EXPECT_EQ(m["prep"]["written"], 2);
  // 1e30 is HF's "unset": no default limit.
  r = run(binary() + " prep --tokenizer " + tokenizer_dir("llama2") + " --input " + env.dir +
              "/in.jsonl --out " + env.dir + "/c",
          env.dir + "/c.log");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_FALSE(contains(r.output, "model_max_length")) << r.output;
  EXPECT_EQ(json::parse(hs::io::read_file(env.dir + "/c/manifest.json"))["max_len"], 0);
}

TEST(PrepLimitsCli, FullDiskIsOneClearErrorAndLeavesNothingBehind) {
  REQUIRE_BINARY();
  Env env;
  // A small tmpfs in a private user + mount namespace (no root needed where user namespaces are on).
  fs::create_directories(env.dir + "/disk");
  if (run("unshare -rm sh -c 'mount -t tmpfs -o size=64k tmpfs " + env.dir + "/disk'", env.dir + "/u.log")
          .code != 0)
    GTEST_SKIP() << "cannot mount a small tmpfs here (unshare -rm)";
  std::vector<std::string> texts;
  for (int i = 0; i < 3000; ++i) texts.push_back("sample " + std::to_string(i) + " " + prose(150));
  write_text_records(env.dir + "/in.jsonl", texts);
  const std::string prep = binary() + " prep --tokenizer " + tokenizer_dir("qwen2.5") + " --input " +
                           env.dir + "/in.jsonl --shard-tokens 100000 --out " + env.dir + "/disk/out";
  for (const char* size : {"8k", "700k"}) {  // the first shard fails / a later one does
    RunResult r = run("unshare -rm sh -c 'mount -t tmpfs -o size=" + std::string(size) + " tmpfs " + env.dir +
                          "/disk && " + prep + " ; rc=$?; ls -A " + env.dir + "/disk/out; exit $rc'",
                      env.dir + "/log.txt");
    SCOPED_TRACE(size);
    EXPECT_EQ(r.code, 1) << r.output;
    EXPECT_TRUE(contains(r.output, env.dir + "/disk/out/shard-0000")) << r.output;
    EXPECT_TRUE(contains(r.output, "No space left on device")) << r.output;
    EXPECT_TRUE(contains(r.output, "hint: nothing was kept in " + env.dir + "/disk/out: free space"))
        << r.output;
    EXPECT_FALSE(contains(r.output, "HDF5-DIAG")) << r.output;         // no HDF5 error stack
    EXPECT_FALSE(contains(r.output, "errno = ")) << r.output;          // nor its driver internals
    EXPECT_FALSE(contains(r.output, "shard-00000.h5\n")) << r.output;  // `ls`: no shard left
    EXPECT_FALSE(contains(r.output, ".tmp.")) << r.output;             // nor a temp file
  }
}

// ---- tokenizer files from the fuzzer ---------------------------------------------------------------

TEST(PrepLimits, TokenizerConfigNumberOverflowNamesFileAndKey) {
  HS_REQUIRE_TESTDATA();
  Env env;
  fs::copy_file(tokenizer_dir("qwen2.5") + "/tokenizer.json", env.dir + "/tokenizer.json");
  hs::io::write_file_atomic(env.dir + "/tokenizer_config.json",
                            "{\n  \"eos_token\": \"<|im_end|>\",\n  \"model_max_length\": 1e99999\n}\n");
  try {
    hs::tokenizer::Tokenizer::from_file(env.dir);
    FAIL() << "no error";
  } catch (const hs::Error& e) {  // before: nlohmann's out_of_range escaped ("internal error ... a bug")
    std::string msg = e.what();
    EXPECT_TRUE(contains(msg, env.dir + "/tokenizer_config.json")) << msg;
    EXPECT_TRUE(contains(msg, "at key 'model_max_length' (line 3)")) << msg;
    EXPECT_TRUE(contains(msg, "number overflow")) << msg;
  }
}

TEST(PrepLimits, VocabIdFarBeyondTheVocabIsRefusedNotAllocated) {
  // Before: ~64 bytes per id up to the largest (5M ids: ~300 MB; the fuzzer's 50M: bad_alloc under 4 GB).
  Env env;
  json t = {
      {"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", 5'000'000}}}, {"merges", {"a b"}}}}};
  hs::io::write_file_atomic(env.dir + "/tokenizer.json", t.dump());
  try {
    hs::tokenizer::Tokenizer::from_file(env.dir);
    FAIL() << "no error";
  } catch (const hs::Error& e) {
    std::string msg = e.what();
    EXPECT_TRUE(contains(msg, "tokenizer.json: model.vocab: token 'ab' has id 5000000, far beyond")) << msg;
  }
  // Small gaps (ids left for added tokens) are fine.
  t["model"]["vocab"]["ab"] = 40;
  hs::io::write_file_atomic(env.dir + "/tokenizer.json", t.dump());
  EXPECT_EQ(hs::tokenizer::Tokenizer::from_file(env.dir).vocab_size(), 41);
}
