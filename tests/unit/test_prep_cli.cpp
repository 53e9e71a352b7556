// `hsloth prep` and `hsloth inspect` as users run them: exit codes, messages that name file:line and the
// fix, the accounting in manifest.json for inputs this test builds (so the expected counts are known
// here), --overwrite, truncation, and inspect's errors. Needs the built binary ($HSLOTH_BIN) and the
// shared Qwen2.5 tokenizer; skips without them.
#include <sys/wait.h>

#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "data/shard_index.h"
#include "io/file.h"
#include "support/test_support.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct CmdResult {
  int code = -1;
  std::string output;
};

struct Env {
  std::string dir = hs::test::temp_dir("hs-prep-cli");
  ~Env() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string file(const std::string& name, const std::string& bytes) const {
    hs::io::write_file_atomic(dir + "/" + name, bytes);
    return dir + "/" + name;
  }
};

// $HSLOTH_BIN, else the hsloth beside this test's build folder (build/tests/test_prep_cli -> build/hsloth).
std::string binary() {
  std::string env = hs::test::hsloth_bin();
  if (!env.empty()) return env;
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : (self.parent_path().parent_path() / "hsloth").string();
}

std::string tokenizer() { return hs::test::testdata_dir() + "/tokenizers/qwen2.5"; }

CmdResult hsloth(const std::string& args, const std::string& log) {
  std::string cmd = binary() + " " + args + " > " + log + " 2>&1";
  int rc = std::system(cmd.c_str());
  CmdResult r;
  r.code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.output = hs::io::read_file(log);
  return r;
}

CmdResult prep(const Env& env, const std::string& args) {
  return hsloth("prep --tokenizer " + tokenizer() + " " + args, env.dir + "/log.txt");
}

json manifest(const std::string& out) { return json::parse(hs::io::read_file(out + "/manifest.json")); }

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string conv(const std::string& q, const std::string& a) {
  return json({{"messages", {{{"role", "user"}, {"content", q}}, {{"role", "assistant"}, {"content", a}}}}})
      .dump();
}

}  // namespace

#define REQUIRE_BINARY()                                                                                    \
  do {                                                                                                      \
    HS_REQUIRE_TESTDATA();                                                                                  \
    if (binary().empty() || !fs::exists(binary())) GTEST_SKIP() << "hsloth binary not built ($HSLOTH_BIN)"; \
  } while (0)

TEST(PrepCli, MalformedLineFailsWithFileLineThenSkipCounts) {
  REQUIRE_BINARY();
  Env env;
  std::string in =
      env.file("bad.jsonl", conv("a", "b") + "\n" + "{\"messages\": [\n" + conv("c", "d") + "\n");
  CmdResult r = prep(env, "--input " + in + " --out " + env.dir + "/out");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, in + ":2: malformed JSON")) << r.output;
  EXPECT_TRUE(contains(r.output, "--on-error skip")) << r.output;
  EXPECT_FALSE(fs::exists(env.dir + "/out/manifest.json"));

  r = prep(env, "--input " + in + " --out " + env.dir + "/out --on-error skip");
  ASSERT_EQ(r.code, 0) << r.output;
  json p = manifest(env.dir + "/out")["prep"];
  EXPECT_EQ(p["input_records"], 3);
  EXPECT_EQ(p["written"], 2);
  EXPECT_EQ(p["skipped"]["malformed"], 1);
  EXPECT_TRUE(contains(r.output, "check: 3 = 2 written + 1 skipped (balanced)")) << r.output;
}

TEST(PrepCli, InvalidUtf8FailOrRepair) {
  REQUIRE_BINARY();
  Env env;
  std::string bad = conv("xBAD(", "y");
  const size_t at = bad.find("BAD");
  bad[at] = '\xC3';  // a lead byte without its continuation: "x\xC3D("
  bad[at + 1] = 'D';
  bad[at + 2] = 'D';
  std::string in = env.file("u.jsonl", conv("a", "b") + "\n" + bad + "\n");
  CmdResult r = prep(env, "--input " + in + " --out " + env.dir + "/out --invalid-utf8 fail");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, in + ":2: invalid UTF-8")) << r.output;
  r = prep(env, "--input " + in + " --out " + env.dir + "/out");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(manifest(env.dir + "/out")["prep"]["utf8_repaired"], 1);
  EXPECT_EQ(manifest(env.dir + "/out")["prep"]["written"], 2);
}

TEST(PrepCli, OverwriteIsExplicit) {
  REQUIRE_BINARY();
  Env env;
  std::string in = env.file("a.jsonl", conv("a", "b") + "\n");
  ASSERT_EQ(prep(env, "--input " + in + " --out " + env.dir + "/out").code, 0);
  CmdResult r = prep(env, "--input " + in + " --out " + env.dir + "/out");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "already holds shards")) << r.output;
  EXPECT_TRUE(contains(r.output, "--overwrite")) << r.output;
  EXPECT_EQ(prep(env, "--input " + in + " --out " + env.dir + "/out --overwrite").code, 0);
}

TEST(PrepCli, EverythingSkippedIsAnErrorAfterTheTable) {
  REQUIRE_BINARY();
  Env env;
  std::string in = env.file("a.jsonl", conv("a", "b") + "\n" + conv("c", "d") + "\n");
  CmdResult r = prep(env, "--input " + in + " --out " + env.dir + "/out --max-len 5");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "skipped: too long                     2")) << r.output;
  EXPECT_TRUE(contains(r.output, "no samples written")) << r.output;
  EXPECT_FALSE(fs::exists(env.dir + "/out/manifest.json"));
}

TEST(PrepCli, TruncateKeepsPrefixesWithinMaxLen) {
  REQUIRE_BINARY();
  Env env;
  std::string body;
  for (int i = 0; i < 30; ++i)
    body += conv("question " + std::to_string(i), std::string(size_t(i * 7), 'z')) + "\n";
  std::string in = env.file("t.jsonl", body);
  ASSERT_EQ(prep(env, "--input " + in + " --out " + env.dir + "/full").code, 0);
  CmdResult r = prep(env, "--input " + in + " --out " + env.dir + "/cut --max-len 40 --too-long truncate");
  ASSERT_EQ(r.code, 0) << r.output;
  auto full = hs::data::ShardIndex::open(env.dir + "/full");
  auto cut = hs::data::ShardIndex::open(env.dir + "/cut");
  int64_t longer = 0;
  for (int32_t len : full.lengths()) longer += len > 40;
  json p = manifest(env.dir + "/cut")["prep"];
  EXPECT_GT(longer, 0);
  EXPECT_EQ(p["truncated"], longer);
  EXPECT_EQ(p["written"].get<int64_t>() + p["skipped"]["no_trainable"].get<int64_t>(), 30);
  for (int32_t len : cut.lengths()) EXPECT_LE(len, 40);
  // Every truncated sample is the first 40 tokens of a full one (compare as sets of id prefixes).
  std::set<std::vector<int32_t>> prefixes;
  for (int64_t i = 0; i < full.num_samples(); ++i) {
    auto s = full.read_sample(i);
    s.ids.resize(std::min<size_t>(s.ids.size(), 40));
    prefixes.insert(s.ids);
  }
  for (int64_t i = 0; i < cut.num_samples(); ++i) EXPECT_TRUE(prefixes.count(cut.read_sample(i).ids)) << i;
  EXPECT_EQ(cut.meta().max_len, 40);
}

TEST(PrepCli, OptionErrors) {
  REQUIRE_BINARY();
  Env env;
  std::string in = env.file("a.jsonl", conv("a", "b") + "\n");
  CmdResult r = prep(env, "--input " + in + " --out " + env.dir + "/o --loss full --last-turn-only");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "--last-turn-only needs --loss response")) << r.output;
  r = prep(env, "--input " + env.dir + "/missing.jsonl --out " + env.dir + "/o");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "missing.jsonl: input file not found")) << r.output;
  std::string unknown = env.file("k.jsonl", "{\"prompt\": \"x\", \"completion\": \"y\"}\n");
  r = prep(env, "--input " + unknown + " --out " + env.dir + "/o");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "k.jsonl:1: cannot tell the format")) << r.output;
}

TEST(InspectCli, ReportsAndFailsClearly) {
  REQUIRE_BINARY();
  Env env;
  std::string in =
      env.file("a.jsonl", conv("a", "b") + "\n" + conv("longer question here", "and answer") + "\n");
  ASSERT_EQ(prep(env, "--input " + in + " --out " + env.dir + "/out").code, 0);
  CmdResult r = hsloth("inspect " + env.dir + "/out --tokens-per-batch 64", env.dir + "/i.txt");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "samples     2")) << r.output;
  EXPECT_TRUE(contains(r.output, "waste = padding tokens / token slots")) << r.output;
  fs::remove(env.dir + "/out/shard-00000.h5");
  r = hsloth("inspect " + env.dir + "/out", env.dir + "/i.txt");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "shard file is missing")) << r.output;
  r = hsloth("inspect " + env.dir + "/nothing-here", env.dir + "/i.txt");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "not found")) << r.output;
}
