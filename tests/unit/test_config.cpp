// The config contract: INI sections map to dotted keys, flags override the file, unknown keys and bad
// values are errors naming the key, the file:line and the closest valid key or choice.
#include <filesystem>
#include <fstream>

#include "config/config.h"
#include "config/schemas.h"
#include "core/error.h"
#include "support/test_support.h"

namespace {
using hs::config::Config;
using hs::config::Schema;

Schema small_schema() {
  Schema s("demo", "", "");
  s.integer("lora.r", 16, "rank", 1, 4096)
      .real("lora.alpha", 32, "alpha")
      .list("lora.targets", "q_proj v_proj", "targets", {"q_proj", "k_proj", "v_proj", "o_proj"})
      .real("train.lr", 2e-4, "lr", 0, 10)
      .choice("train.schedule", "cosine", {"constant", "linear", "cosine"}, "schedule")
      .boolean("train.flag", false, "a flag")
      .path("model.path", "", "model", true)
      .path("dir", "", "a positional")
      .positional("dir");
  return s;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const hs::Error& e) {
    return e.what();
  }
  return "";
}

std::string write_temp(const std::string& name, const std::string& text) {
  std::string dir = hs::test::temp_dir("hs-config");
  std::string path = dir + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(Config, IniSectionsBecomeDottedKeysAndDefaultsFill) {
  Schema s = small_schema();
  Config c = hs::config::parse_ini_text(s, "; a run\n[model]\npath = /m # the model\n[lora]\nr = 8 ; rank\n", "run.ini");
  EXPECT_EQ(c.get("model.path"), "/m");
  EXPECT_EQ(c.get_int("lora.r"), 8);
  EXPECT_DOUBLE_EQ(c.get_real("lora.alpha"), 32.0);
  EXPECT_EQ(c.origin("lora.r"), "run.ini:5");
  EXPECT_EQ(c.origin("lora.alpha"), "default");
  EXPECT_TRUE(c.given("lora.r"));
  EXPECT_FALSE(c.given("lora.alpha"));
  EXPECT_EQ(c.get_list("lora.targets"), (std::vector<std::string>{"q_proj", "v_proj"}));
}

TEST(Config, FlagsOverrideTheFile) {
  Schema s = small_schema();
  std::string ini = write_temp("run.ini", "[model]\npath = /m\n[lora]\nr = 8\n[train]\nlr = 1e-3\n");
  Config c = hs::config::parse(s, {"--config", ini, "--lora.r", "32", "--train.lr=5e-5", "--train.flag"});
  EXPECT_EQ(c.get_int("lora.r"), 32);
  EXPECT_EQ(c.origin("lora.r"), "command line");
  EXPECT_DOUBLE_EQ(c.get_real("train.lr"), 5e-5);
  EXPECT_TRUE(c.get_bool("train.flag"));
  EXPECT_EQ(c.get("model.path"), "/m");
}

TEST(Config, UnknownIniKeyNamesFileLineAndSuggestion) {
  Schema s = small_schema();
  std::string msg = message_of(
      [&] { hs::config::parse_ini_text(s, "[model]\npath = /m\n[lora]\nrr = 8\n", "run.ini"); });
  EXPECT_NE(msg.find("run.ini:4"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown key 'lora.rr'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'lora.r'"), std::string::npos) << msg;
}

TEST(Config, UnknownFlagSuggestsClosestKey) {
  Schema s = small_schema();
  std::string msg = message_of([&] { hs::config::parse(s, {"--model.path", "/m", "--lora.alhpa", "4"}); });
  EXPECT_NE(msg.find("unknown option '--lora.alhpa'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'lora.alpha'"), std::string::npos) << msg;
}

TEST(Config, BadValuesNameKeyAndOrigin) {
  Schema s = small_schema();
  std::string msg = message_of([&] { hs::config::parse(s, {"--model.path", "/m", "--lora.r", "sixteen"}); });
  EXPECT_NE(msg.find("'lora.r'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not an integer"), std::string::npos) << msg;
  msg = message_of([&] { hs::config::parse(s, {"--model.path", "/m", "--lora.r", "0"}); });
  EXPECT_NE(msg.find("out of range"), std::string::npos) << msg;
  msg = message_of([&] { hs::config::parse_ini_text(s, "[model]\npath=/m\n[train]\nschedule = cosin\n", "a.ini"); });
  EXPECT_NE(msg.find("a.ini:4"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'cosine'"), std::string::npos) << msg;
  msg = message_of([&] { hs::config::parse(s, {"--model.path", "/m", "--lora.targets", "q_proj", "x_proj"}); });
  EXPECT_NE(msg.find("'x_proj' is not a valid item"), std::string::npos) << msg;
  msg = message_of([&] { hs::config::parse(s, {"--model.path", "/m", "--train.lr", "nan"}); });
  EXPECT_NE(msg.find("not a number"), std::string::npos) << msg;
  msg = message_of([&] { hs::config::parse(s, {"--model.path", "/m", "--train.flag=maybe"}); });
  EXPECT_NE(msg.find("not a boolean"), std::string::npos) << msg;
}

TEST(Config, MissingRequiredAndMalformedIni) {
  Schema s = small_schema();
  std::string msg = message_of([&] { hs::config::parse(s, {}); });
  EXPECT_NE(msg.find("missing required option 'model.path'"), std::string::npos) << msg;
  msg = message_of([&] { hs::config::parse_ini_text(s, "[model\npath = /m\n", "b.ini"); });
  EXPECT_NE(msg.find("b.ini:1"), std::string::npos) << msg;
  msg = message_of([&] { hs::config::parse_ini_text(s, "[model]\njust some words\n", "c.ini"); });
  EXPECT_NE(msg.find("c.ini:2"), std::string::npos) << msg;
  msg = message_of([&] { hs::config::parse_ini_text(s, "[model]\npath=/a\npath=/b\n", "d.ini"); });
  EXPECT_NE(msg.find("set twice"), std::string::npos) << msg;
  msg = message_of([&] { hs::config::parse(s, {"--config", "/nonexistent/run.ini"}); });
  EXPECT_NE(msg.find("/nonexistent/run.ini"), std::string::npos) << msg;
}

TEST(Config, PositionalsAndExtras) {
  Schema s = small_schema();
  Config c = hs::config::parse(s, {"shards/", "--model.path", "/m"});
  // A relative path on the command line is relative to the working directory, and stored absolute.
  EXPECT_EQ(c.get("dir"), std::filesystem::current_path().string() + "/shards/");
  std::string msg = message_of([&] { hs::config::parse(s, {"a", "b", "--model.path", "/m"}); });
  EXPECT_NE(msg.find("unexpected argument 'b'"), std::string::npos) << msg;
}

// A scratch folder holding model/ and shards/ (train's input paths must exist).
struct InputDirs {
  std::filesystem::path root;
  InputDirs() {
    root = std::filesystem::path(hs::test::temp_dir("config"));
    std::filesystem::create_directories(root / "model");
    std::filesystem::create_directories(root / "shards");
    std::filesystem::create_directories(root / "sub");
  }
};

TEST(Config, ResolvedIniRoundTrips) {
  const Schema& s = hs::config::train_schema();
  InputDirs d;
  Config c = hs::config::parse(s, {"--model.path", (d.root / "model").string(), "--data.train",
                                   (d.root / "shards").string(), "--lora.r", "8", "--lora.targets",
                                   "q_proj,v_proj"});
  std::string ini = c.to_ini();
  EXPECT_NE(ini.find("[lora]\nr = 8\n"), std::string::npos) << ini;
  // Read back from another folder: the resolved config's paths are absolute, so they mean the same.
  Config again = hs::config::parse_ini_text(s, ini, (d.root / "sub" / "config.resolved.ini").string());
  for (const auto& k : s.keys()) EXPECT_EQ(again.get(k.name), c.get(k.name)) << k.name;
}

TEST(Config, RelativePathsInAnIniAreRelativeToTheFile) {
  const Schema& s = hs::config::train_schema();
  InputDirs d;
  const std::string ini = (d.root / "sub" / "run.ini").string();
  {
    std::ofstream f(ini);
    f << "[model]\npath = ../model\n[data]\ntrain = ../shards/\n[run]\ndir = out\n";
  }
  // parse() from the test's working directory, which is not the INI's folder.
  ASSERT_NE(std::filesystem::current_path(), d.root / "sub");
  Config c = hs::config::parse(s, {"--config", ini});
  EXPECT_EQ(c.get("model.path"), (d.root / "model").string());
  EXPECT_EQ(c.get("data.train"), (d.root / "shards").string() + "/");
  EXPECT_EQ(c.get("run.dir"), (d.root / "sub" / "out").string());
  // The command line still overrides, relative to the working directory.
  Config o = hs::config::parse(s, {"--config", ini, "--run.dir", "elsewhere"});
  EXPECT_EQ(o.get("run.dir"), (std::filesystem::current_path() / "elsewhere").string());
}

TEST(Config, MissingInputPathNamesTheConfigLine) {
  const Schema& s = hs::config::train_schema();
  InputDirs d;
  const std::string ini = (d.root / "sub" / "run.ini").string();
  {
    std::ofstream f(ini);
    f << "# run\n[model]\npath = ../model\n[data]\ntrain = shards\n";
  }
  std::string msg = message_of([&] { hs::config::parse(s, {"--config", ini}); });
  EXPECT_NE(msg.find(ini + ":5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'data.train': "), std::string::npos) << msg;
  EXPECT_NE(msg.find("not found"), std::string::npos) << msg;
  EXPECT_NE(msg.find((d.root / "sub" / "shards").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("relative to the file's folder"), std::string::npos) << msg;
  msg = message_of([&] {
    hs::config::parse(s, {"--model.path", "no-such-model", "--data.train", (d.root / "shards").string()});
  });
  EXPECT_NE(msg.find("command line"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'model.path': "), std::string::npos) << msg;
}

TEST(Config, TrainSchemaHasTheDesignContractKeys) {
  const Schema& s = hs::config::train_schema();
  for (const char* key :
       {"model.path", "data.train", "data.eval", "run.dir", "finetune", "lora.r", "lora.alpha", "lora.dropout",
        "lora.targets", "train.lr", "train.schedule", "train.warmup_steps", "train.max_steps", "train.epochs",
        "train.tokens_per_batch", "train.grad_accum", "train.max_grad_norm", "train.seed", "train.packing",
        "train.grad_ckpt", "train.resume", "eval.every", "ckpt.every", "ckpt.keep", "log.every"})
    EXPECT_NE(s.find(key), nullptr) << key;
  std::string help = s.help();
  EXPECT_NE(help.find("--lora.r <integer>"), std::string::npos);
  EXPECT_NE(help.find("default: 16"), std::string::npos);
}

TEST(Config, ClosestIsNotOverEager) {
  EXPECT_EQ(hs::config::closest("zzzzzz", {"lora.r", "train.lr"}), "");
  EXPECT_EQ(hs::config::closest("model.tokenizer", {"lora.r", "train.lr"}), "");
  EXPECT_EQ(hs::config::closest("lora.rank", {"lora.r", "train.lr"}), "lora.r");
  EXPECT_EQ(hs::config::closest("r", {"lora.r", "train.lr"}), "lora.r");
  EXPECT_EQ(hs::config::closest("trian", {"train", "eval", "info"}), "train");
}

}  // namespace
