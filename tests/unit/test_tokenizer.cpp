// Tokenizer tests against independent references: the llama.cpp/HF vectors in shared/data
// (tokenizer-vectors/*.inp/.out, made with HF tokenizers), the tokenizer.json/tokenizer_config.json files
// themselves (ids of special tokens, templates), HF's own added-token test cases (added_vocabulary.rs),
// the GPT-2 byte map and the SentencePiece conventions for offsets, Unicode facts, and regex semantics.
// The full random-corpus comparison with HF tokenizers lives in tests/parity/tokenizer_parity.py.
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/file.h"
#include "support/test_support.h"
#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace {

using hs::tokenizer::Tokenizer;
namespace fs = std::filesystem;

const char* kSep = "\n__ggml_vocab_test__\n";

std::string tok_path(const std::string& name) { return hs::test::testdata_dir() + "/tokenizers/" + name; }

// Items of a .inp file: split on the separator; the separator ends each item (no empty item after the last).
std::vector<std::string> read_items(const std::string& path) {
  std::string text = hs::io::read_file(path);
  std::vector<std::string> items;
  size_t start = 0;
  std::string sep = kSep;
  while (true) {
    size_t at = text.find(sep, start);
    if (at == std::string::npos) {
      if (start < text.size()) items.push_back(text.substr(start));
      break;
    }
    items.push_back(text.substr(start, at - start));
    start = at + sep.size();
  }
  return items;
}

std::vector<std::vector<int32_t>> read_ids(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::vector<int32_t>> out;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::vector<int32_t> ids;
    int32_t id;
    while (ls >> id) ids.push_back(id);
    out.push_back(ids);
  }
  return out;
}

std::string show(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) {
    s += ' ';
    s += std::to_string(id);
  }
  return s;
}

// Tokenizers are large: load each once per test binary.
const Tokenizer& load(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& slot = cache[name];
  if (!slot) slot = std::make_unique<Tokenizer>(Tokenizer::from_file(tok_path(name)));
  return *slot;
}

void check_vectors(const std::string& tokenizer, const std::string& vectors) {
  std::string dir = hs::test::testdata_dir() + "/tokenizer-vectors/";
  auto items = read_items(dir + vectors + ".inp");
  auto expected = read_ids(dir + vectors + ".out");
  ASSERT_EQ(items.size(), 46u) << "the shared vectors have 46 items";
  ASSERT_GE(expected.size(), items.size());
  const Tokenizer& t = load(tokenizer);
  int bad = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    auto ids = t.encode_ids(items[i], false);
    if (ids != expected[i]) {
      ++bad;
      ADD_FAILURE() << tokenizer << " item " << i << " '" << items[i] << "'\n  want" << show(expected[i])
                    << "\n  got " << show(ids);
    }
  }
  EXPECT_EQ(bad, 0);
}

TEST(TokenizerVectors, Qwen25) {
  HS_REQUIRE_TESTDATA();
  check_vectors("qwen2.5", "qwen2");
}
TEST(TokenizerVectors, Qwen3) {
  HS_REQUIRE_TESTDATA();
  check_vectors("qwen3", "qwen2");
}
TEST(TokenizerVectors, Llama2) {
  HS_REQUIRE_TESTDATA();
  check_vectors("llama2", "llama-spm");
}
TEST(TokenizerVectors, TinyLlama) {
  HS_REQUIRE_TESTDATA();
  check_vectors("tinyllama", "llama-spm");
}

// ---- round trips and offsets on the shared vectors ---------------------------------------------

std::vector<std::string> vector_items() {
  return read_items(hs::test::testdata_dir() + "/tokenizer-vectors/qwen2.inp");
}

// The vectors are NFC and have no added-token text: decode(encode(x)) must give x back exactly.
TEST(TokenizerRoundTrip, DecodeInvertsEncode) {
  HS_REQUIRE_TESTDATA();
  std::vector<std::string> extra = {"",
                                    " ",
                                    "  leading and trailing  ",
                                    "tabs\tand\r\nCRLF",
                                    "🤗👨‍👩‍👧‍👦🇯🇵",
                                    "数字 12345 ١٢٣",
                                    "\xc2\xa0nbsp",
                                    "ſ 'ſ It'S"};
  for (const char* name : {"qwen2.5", "qwen3", "llama2", "tinyllama"}) {
    const Tokenizer& t = load(name);
    auto items = vector_items();
    items.insert(items.end(), extra.begin(), extra.end());
    for (const auto& x : items) {
      auto ids = t.encode_ids(x);
      EXPECT_EQ(t.decode(ids), x) << name << " input '" << x << "'";
      // With BOS the special token is dropped by skip_special_tokens. Not for llama2: its <s> is a
      // normalized token, which decodes to "▁<s>" and so is not recognised as special (as in HF).
      if (std::string(name) != "llama2") {
        EXPECT_EQ(t.decode(t.encode_ids(x, true), true), x) << name << " with BOS, input '" << x << "'";
      }
    }
  }
}

// GPT-2's byte <-> character map, written from its definition (bytes_to_unicode in GPT-2's encoder.py).
std::string gpt2_token_bytes(const std::string& token) {
  std::map<uint32_t, uint8_t> back;
  uint32_t n = 0;
  for (uint32_t b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    back[printable ? b : 256 + n++] = uint8_t(b);
  }
  std::string out;
  for (size_t i = 0; i < token.size();) {
    int len;
    uint32_t cp =
        hs::tokenizer::unicode::decode_utf8(reinterpret_cast<const unsigned char*>(token.data()) + i, &len);
    i += size_t(len);
    out.push_back(char(back.at(cp)));
  }
  return out;
}

// Byte-level: every token's offsets select exactly its bytes, and the tokens tile the text.
TEST(TokenizerOffsets, ByteLevelTokensCoverTheirBytes) {
  HS_REQUIRE_TESTDATA();
  const Tokenizer& t = load("qwen3");
  auto items = vector_items();
  items.push_back("<|im_start|>user\n你好 🤗<|im_end|>\n<think>\n</think>");
  for (const auto& x : items) {
    auto enc = t.encode(x);
    ASSERT_EQ(enc.ids.size(), enc.offsets.size());
    uint32_t pos = 0;
    for (size_t k = 0; k < enc.ids.size(); ++k) {
      auto [b, e] = enc.offsets[k];
      ASSERT_EQ(b, pos) << "tokens must tile the text: '" << x << "' token " << k;
      std::string token = t.id_to_token(enc.ids[k]);
      // Ids from 151643 on are added tokens (shared/data/README.md: 151,643 model tokens).
      std::string want = enc.ids[k] >= 151643 ? token : gpt2_token_bytes(token);
      EXPECT_EQ(x.substr(b, e - b), want) << "'" << x << "' token " << k << " id " << enc.ids[k];
      pos = e;
    }
    EXPECT_EQ(pos, x.size());
  }
}

// SentencePiece-style: a token's text is its string with ▁ as a space, <0xXX> is one byte, and the ▁
// that the normalizer prepends maps to the first character.
TEST(TokenizerOffsets, SentencePieceTokensCoverTheirText) {
  HS_REQUIRE_TESTDATA();
  for (const char* name : {"llama2", "tinyllama"}) {
    const Tokenizer& t = load(name);
    for (const auto& x : vector_items()) {
      auto enc = t.encode(x, true);
      ASSERT_FALSE(enc.ids.empty());
      EXPECT_EQ(enc.ids[0], 1) << "BOS first";
      EXPECT_EQ(enc.offsets[0], std::make_pair(0u, 0u)) << "BOS has an empty range at 0";
      for (size_t k = 1; k < enc.ids.size(); ++k) {
        std::string token = t.id_to_token(enc.ids[k]), want;
        if (token.size() == 6 && token.rfind("<0x", 0) == 0) {
          want = std::string(1, char(std::stoi(token.substr(3, 2), nullptr, 16)));
        } else {
          for (size_t i = 0; i < token.size();) {
            if (token.compare(i, 3, "\xe2\x96\x81") == 0) {
              want += ' ';
              i += 3;
            } else {
              want += token[i++];
            }
          }
        }
        auto [b, e] = enc.offsets[k];
        if (k == 1) {  // the prepended ▁ stands on the first character
          ASSERT_EQ(b, 0u);
          if (want == " ") continue;
          want = want.substr(1);
        }
        EXPECT_EQ(x.substr(b, e - b), want) << name << " '" << x << "' token " << k << " '" << token << "'";
      }
    }
  }
}

// ---- special tokens, config, post-processor -----------------------------------------------------

TEST(TokenizerConfig, SpecialTokensAndTemplates) {
  HS_REQUIRE_TESTDATA();
  const Tokenizer& q = load("qwen2.5");
  // tokenizer_config.json: bos null, eos <|im_end|>, pad <|endoftext|>; ids from tokenizer.json added_tokens.
  EXPECT_EQ(q.specials().bos, -1);
  EXPECT_EQ(q.specials().eos, 151645);
  EXPECT_EQ(q.specials().eos_text, "<|im_end|>");
  EXPECT_EQ(q.specials().pad, 151643);
  EXPECT_NE(q.chat_template().find("<|im_start|>"), std::string::npos);
  EXPECT_EQ(q.vocab_size(), 151665);
  EXPECT_EQ(load("qwen3").vocab_size(), 151669);
  EXPECT_EQ(q.sha256().substr(0, 8), "22bfef58");  // shared/data/README.md
  EXPECT_EQ(load("qwen3").sha256().substr(0, 8), "aeb13307");
  EXPECT_TRUE(q.is_special(151643));
  EXPECT_FALSE(q.is_special(151657));  // <tool_call> is added but not special
  EXPECT_EQ(q.token_to_id("<think>"), std::nullopt);
  EXPECT_EQ(load("qwen3").token_to_id("<think>"), 151667);

  const Tokenizer& l = load("llama2");
  EXPECT_EQ(l.specials().bos, 1);
  EXPECT_EQ(l.specials().eos, 2);
  EXPECT_EQ(l.specials().unk, 0);
  EXPECT_EQ(l.specials().pad, -1);
  EXPECT_EQ(l.vocab_size(), 32000);

  const Tokenizer& tl = load("tinyllama");
  EXPECT_EQ(tl.specials().pad, 2);  // pad_token </s>
  // TinyLlama keeps its template in chat_template.jinja beside tokenizer.json.
  EXPECT_EQ(tl.chat_template(), hs::io::read_file(tok_path("tinyllama") + "/chat_template.jinja"));
  EXPECT_EQ(fs::path(tl.path()).filename(), "tokenizer.json");
}

TEST(TokenizerPostProcessor, BosOnlyWhereDeclared) {
  HS_REQUIRE_TESTDATA();
  for (const auto& x : vector_items()) {
    // Llama: TemplateProcessing "<s> $A" with ids [1].
    auto plain = load("llama2").encode_ids(x, false);
    auto with = load("llama2").encode_ids(x, true);
    ASSERT_EQ(with.size(), plain.size() + 1);
    EXPECT_EQ(with[0], 1);
    EXPECT_TRUE(std::equal(plain.begin(), plain.end(), with.begin() + 1));
    // Qwen: the ByteLevel post-processor adds nothing.
    EXPECT_EQ(load("qwen2.5").encode_ids(x, true), load("qwen2.5").encode_ids(x, false));
  }
}

// ---- added-token flags: HF's own cases (tokenizers/src/tokenizer/added_vocabulary.rs) -----------

struct TempTokenizer {
  std::string dir;
  std::unique_ptr<Tokenizer> tok;
  ~TempTokenizer() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

// A character-level BPE (one token per character, no merges) with the given added tokens, so that
// the ids show exactly where the added tokens split the text.
std::unique_ptr<TempTokenizer> char_tokenizer(const nlohmann::json& added,
                                              const nlohmann::json& normalizer = nullptr) {
  nlohmann::json vocab = nlohmann::json::object();
  vocab["<unk>"] = 0;
  std::vector<std::string> chars;
  for (int c = 0x20; c < 0x7F; ++c) chars.emplace_back(1, char(c));
  for (const char* extra : {"\t", "\n", "\xe2\x80\x80" /* U+2000 */, "\xe2\x97\x8c" /* ◌ */,
                            "\xcc\xb0" /* U+0330 */, "\xe2\x96\x81" /* ▁ */})
    chars.emplace_back(extra);
  for (const auto& c : chars) vocab[c] = int(vocab.size());
  nlohmann::json doc = {{"version", "1.0"},
                        {"truncation", nullptr},
                        {"padding", nullptr},
                        {"added_tokens", nlohmann::json::array()},
                        {"normalizer", normalizer},
                        {"pre_tokenizer", nullptr},
                        {"post_processor", nullptr},
                        {"decoder", nullptr},
                        {"model",
                         {{"type", "BPE"},
                          {"dropout", nullptr},
                          {"unk_token", "<unk>"},
                          {"fuse_unk", false},
                          {"byte_fallback", false},
                          {"vocab", vocab},
                          {"merges", nlohmann::json::array()}}}};
  int id = int(vocab.size());
  for (auto t : added) {
    t["id"] = id++;
    for (const char* flag : {"single_word", "lstrip", "rstrip"})
      if (!t.contains(flag)) t[flag] = false;
    if (!t.contains("special")) t["special"] = false;
    if (!t.contains("normalized")) t["normalized"] = !t["special"].get<bool>();
    doc["added_tokens"].push_back(t);
  }
  auto out = std::make_unique<TempTokenizer>();
  out->dir = hs::test::temp_dir("hs-tok");
  hs::io::write_file_atomic(out->dir + "/tokenizer.json", doc.dump());
  out->tok = std::make_unique<Tokenizer>(Tokenizer::from_file(out->dir));
  return out;
}

// The text split as HF's AddedVocabulary splits it: (piece, added token content or "").
std::vector<std::pair<std::string, std::string>> splits(const Tokenizer& t, const std::string& text) {
  auto enc = t.encode(text);
  std::vector<std::pair<std::string, std::string>> out;
  size_t pending_b = 0, pending_e = 0;
  bool pending = false;
  for (size_t k = 0; k < enc.ids.size(); ++k) {
    auto [b, e] = enc.offsets[k];
    bool added = enc.ids[k] >= 95 + 7;  // after <unk> + 95 ASCII + 6 extra characters
    if (added) {
      if (pending) out.emplace_back(text.substr(pending_b, pending_e - pending_b), "");
      pending = false;
      out.emplace_back(text.substr(b, e - b), t.id_to_token(enc.ids[k]));
    } else {
      if (!pending) pending_b = b;
      pending_e = e;
      pending = true;
    }
  }
  if (pending) out.emplace_back(text.substr(pending_b, pending_e - pending_b), "");
  return out;
}

using Splits = std::vector<std::pair<std::string, std::string>>;

TEST(TokenizerAddedTokens, ExtractsNormalAndSpecial) {
  auto t = char_tokenizer({{{"content", "my"}},
                           {{"content", "name"}},
                           {{"content", "[CLS]"}, {"special", true}},
                           {{"content", "[SEP]"}, {"special", true}}});
  EXPECT_EQ(
      splits(*t->tok, "[CLS] My name is Anthony [SEP]"),
      (Splits{{"[CLS]", "[CLS]"}, {" My ", ""}, {"name", "name"}, {" is Anthony ", ""}, {"[SEP]", "[SEP]"}}));
}

TEST(TokenizerAddedTokens, LstripRstripSingleWord) {
  auto t = char_tokenizer({{{"content", "my"}, {"lstrip", true}, {"rstrip", true}},
                           {{"content", "name"}},
                           {{"content", "ony"}, {"single_word", true}},
                           {{"content", "[CLS]"}, {"special", true}},
                           {{"content", "[SEP]"}, {"special", true}}});
  // HF: " my " includes both spaces (lstrip, rstrip); "ony" inside "anthony" is not a single word.
  EXPECT_EQ(
      splits(*t->tok, "[CLS] my name is anthony [SEP]"),
      (Splits{
          {"[CLS]", "[CLS]"}, {" my ", "my"}, {"name", "name"}, {" is anthony ", ""}, {"[SEP]", "[SEP]"}}));
}

TEST(TokenizerAddedTokens, SingleWord) {
  auto t = char_tokenizer({{{"content", "<mask>"}, {"single_word", true}}});
  EXPECT_EQ(splits(*t->tok, "<mask> My name <mask> A<mask> <mask>ony <mask>"),
            (Splits{{"<mask>", "<mask>"},
                    {" My name ", ""},
                    {"<mask>", "<mask>"},
                    {" A<mask> <mask>ony ", ""},
                    {"<mask>", "<mask>"}}));
  // Punctuation is not a word character, a combining mark is.
  EXPECT_EQ(
      splits(*t->tok, "<mask>, <mask>- \xe2\x97\x8c\xcc\xb0<mask>"),
      (Splits{{"<mask>", "<mask>"}, {", ", ""}, {"<mask>", "<mask>"}, {"- \xe2\x97\x8c\xcc\xb0<mask>", ""}}));
}

TEST(TokenizerAddedTokens, StripUnicodeSpaces) {
  auto t =
      char_tokenizer({{{"content", "<mask>"}, {"lstrip", true}, {"rstrip", true}, {"single_word", true}}});
  EXPECT_EQ(splits(*t->tok, "Hi <mask> there\t<mask>\t<mask>\xe2\x80\x80"),
            (Splits{{"Hi", ""},
                    {" <mask> ", "<mask>"},
                    {"there", ""},
                    {"\t<mask>\t", "<mask>"},
                    {"<mask>\xe2\x80\x80", "<mask>"}}));
}

// normalized=true tokens are matched in the normalized text ("<s>" -> "▁<s>" under Prepend+Replace),
// normalized=false ones in the raw text, before the normalizer runs on each remaining piece.
TEST(TokenizerAddedTokens, NormalizedFlag) {
  nlohmann::json sp = {
      {"type", "Sequence"},
      {"normalizers",
       {{{"type", "Prepend"}, {"prepend", "\xe2\x96\x81"}},
        {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xe2\x96\x81"}}}}};
  auto norm = char_tokenizer({{{"content", "<s>"}, {"special", true}, {"normalized", true}}}, sp);
  auto raw = char_tokenizer({{{"content", "<s>"}, {"special", true}, {"normalized", false}}}, sp);
  const int bar = 101, a = 1 + ('a' - 0x20), b = 1 + ('b' - 0x20), s_id = 102;
  EXPECT_EQ(norm->tok->encode_ids("a <s>b"), (std::vector<int32_t>{bar, a, s_id, b}));
  EXPECT_EQ(raw->tok->encode_ids("a <s>b"), (std::vector<int32_t>{bar, a, bar, s_id, bar, b}));
  EXPECT_EQ(norm->tok->encode("a <s>b").offsets[2], std::make_pair(1u, 5u));  // " <s>"
  EXPECT_EQ(raw->tok->encode("a <s>b").offsets[3], std::make_pair(2u, 5u));   // "<s>"
  // Without the space there is no "▁<s>" to match in "▁a<s>b".
  EXPECT_EQ(norm->tok->encode_ids("a<s>b").size(), 6u);
  // A normalized token decodes to its normalized text, as in HF ("▁<s>").
  EXPECT_EQ(norm->tok->id_to_token(s_id), "\xe2\x96\x81<s>");
}

// tokenizer_config.json: tokens as strings or AddedToken dicts, the chat template as a string or as a
// list of named templates (the one named "default" is taken).
TEST(TokenizerConfig, ConfigForms) {
  auto t =
      char_tokenizer({{{"content", "<s>"}, {"special", true}}, {{"content", "</s>"}, {"special", true}}});
  nlohmann::json config = {
      {"bos_token", {{"__type", "AddedToken"}, {"content", "<s>"}, {"lstrip", false}}},
      {"eos_token", "</s>"},
      {"pad_token", nullptr},
      {"chat_template", nlohmann::json::array({nlohmann::json{{"name", "tool_use"}, {"template", "T"}},
                                               nlohmann::json{{"name", "default"}, {"template", "D"}}})}};
  hs::io::write_file_atomic(t->dir + "/tokenizer_config.json", config.dump());
  auto tok = Tokenizer::from_file(t->dir + "/tokenizer.json");
  EXPECT_EQ(tok.specials().bos, 102);
  EXPECT_EQ(tok.specials().bos_text, "<s>");
  EXPECT_EQ(tok.specials().eos, 103);
  EXPECT_EQ(tok.specials().pad, -1);
  EXPECT_EQ(tok.specials().unk, 0);  // from model.unk_token when the config does not name one
  EXPECT_EQ(tok.chat_template(), "D");
  config["chat_template"] = 7;
  hs::io::write_file_atomic(t->dir + "/tokenizer_config.json", config.dump());
  try {
    Tokenizer::from_file(t->dir);
    ADD_FAILURE() << "a numeric chat_template must be an error";
  } catch (const hs::Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer_config.json: chat_template"), std::string::npos)
        << e.what();
  }
}

// Unknown characters without byte fallback become <unk>, one per run with fuse_unk (HF's BPE).
TEST(TokenizerModel, UnknownCharacters) {
  auto t = char_tokenizer({});
  auto ids = t->tok->encode_ids(
      "a\xc3\xa9\xc3\xa8"
      "b");  // é è are not in the vocabulary
  EXPECT_EQ(ids, (std::vector<int32_t>{1 + ('a' - 0x20), 0, 0, 1 + ('b' - 0x20)}));
  auto enc = t->tok->encode(
      "a\xc3\xa9\xc3\xa8"
      "b");
  EXPECT_EQ(enc.offsets[1], std::make_pair(1u, 3u));
  EXPECT_EQ(enc.offsets[2], std::make_pair(3u, 5u));
  nlohmann::json doc = nlohmann::json::parse(hs::io::read_file(t->dir + "/tokenizer.json"));
  doc["model"]["fuse_unk"] = true;
  hs::io::write_file_atomic(t->dir + "/tokenizer.json", doc.dump());
  auto fused = Tokenizer::from_file(t->dir);
  enc = fused.encode(
      "a\xc3\xa9\xc3\xa8"
      "b");
  EXPECT_EQ(enc.ids, (std::vector<int32_t>{1 + ('a' - 0x20), 0, 1 + ('b' - 0x20)}));
  EXPECT_EQ(enc.offsets[1], std::make_pair(1u, 5u));
}

// Concurrent encodes give the same results as one thread (one of them uses the shared scratch and
// cache, the others their own).
TEST(TokenizerThreads, ConcurrentEncodes) {
  HS_REQUIRE_TESTDATA();
  const Tokenizer& t = load("qwen2.5");
  auto items = vector_items();
  std::vector<std::vector<int32_t>> want;
  for (const auto& x : items) want.push_back(t.encode_ids(x));
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&] {
      for (int rep = 0; rep < 50; ++rep)
        for (size_t i = 0; i < items.size(); ++i)
          if (t.encode_ids(items[i]) != want[i]) ++bad;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

// `hsloth tokenize`: items, separators with escapes, --bos, --decode, and errors that name file:line.
// $HSLOTH_BIN, else the hsloth beside the build's tests/ folder (where CMake puts it).
std::string hsloth() {
  std::string bin = hs::test::hsloth_bin();
  if (!bin.empty()) return bin;
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  fs::path guess = self.parent_path().parent_path() / "hsloth";
  return !ec && fs::exists(guess) ? guess.string() : "";
}

std::pair<int, std::string> run_cli(const std::string& args) {
  std::string cmd = hsloth() + " tokenize " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(TokenizerCli, EncodeDecodeAndErrors) {
  HS_REQUIRE_TESTDATA();
  if (hsloth().empty() || !fs::exists(hsloth())) GTEST_SKIP() << "hsloth not built";
  std::string dir = hs::test::temp_dir("hs-tok-cli");
  const Tokenizer& t = load("llama2");
  hs::io::write_file_atomic(dir + "/in.txt", std::string("Hello world\n--\n\n--\n x\ty\n--\n"));
  std::string tok = tok_path("llama2");
  auto [rc, out] = run_cli("--tokenizer " + tok + " --file " + dir + "/in.txt --split '\\n--\\n' --bos");
  ASSERT_EQ(rc, 0) << out;
  std::string want;
  for (const char* item : {"Hello world", "", " x\ty"}) {
    auto ids = t.encode_ids(item, true);
    for (size_t k = 0; k < ids.size(); ++k) want += (k ? " " : "") + std::to_string(ids[k]);
    want += "\n";
  }
  EXPECT_EQ(out, want);

  hs::io::write_file_atomic(dir + "/ids.txt", "15043 3186\n\n1 2 x\n");
  std::tie(rc, out) = run_cli("--tokenizer " + tok + "/tokenizer.json --decode --file " + dir + "/ids.txt");
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find(dir + "/ids.txt:3"), std::string::npos) << out;
  EXPECT_NE(out.find("'x' is not a token id"), std::string::npos) << out;
  hs::io::write_file_atomic(dir + "/ids.txt", "15043 3186\n\n1 99999\n");
  std::tie(rc, out) = run_cli("--tokenizer " + tok + " --decode --file " + dir + "/ids.txt");
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find(dir + "/ids.txt:3"), std::string::npos) << out;
  EXPECT_NE(out.find("token id 99999"), std::string::npos) << out;
  hs::io::write_file_atomic(dir + "/ids.txt", "15043 3186\n\n");
  std::tie(rc, out) = run_cli("--tokenizer " + tok + " --decode --file " + dir + "/ids.txt");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "Hello world\n\n");
  std::tie(rc, out) = run_cli("--tokenizer " + dir + " --text hi");
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("no tokenizer.json in this folder"), std::string::npos) << out;
  fs::remove_all(dir);
}

// ---- loader and input errors name the file, the key and what is wrong ----------------------------

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const hs::Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(TokenizerErrors, MalformedFiles) {
  auto base = char_tokenizer({});
  std::string good = hs::io::read_file(base->dir + "/tokenizer.json");
  auto write = [&](const std::string& text) {
    hs::io::write_file_atomic(base->dir + "/tokenizer.json", text);
    return base->dir + "/tokenizer.json";
  };
  auto msg = error_of([&] { Tokenizer::from_file(write(good.substr(0, good.size() / 2))); });
  EXPECT_NE(msg.find(base->dir + "/tokenizer.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot parse JSON"), std::string::npos) << msg;
  EXPECT_NE(msg.find("line"), std::string::npos) << msg;

  auto edit = [&](const std::function<void(nlohmann::json&)>& change) {
    nlohmann::json doc = nlohmann::json::parse(good);
    change(doc);
    return error_of([&] { Tokenizer::from_file(write(doc.dump())); });
  };
  msg = edit([](nlohmann::json& d) { d["model"].erase("merges"); });
  EXPECT_NE(msg.find("model: missing key 'merges'"), std::string::npos) << msg;
  msg = edit([](nlohmann::json& d) { d["model"]["merges"] = nlohmann::json::array({"a b", "a zz"}); });
  EXPECT_NE(msg.find("model.merges[0]"), std::string::npos) << msg;  // "ab" is not in the vocab
  msg = edit([](nlohmann::json& d) { d["model"]["merges"] = nlohmann::json::array({"! !", 5}); });
  EXPECT_NE(msg.find("model.merges[1]: expected \"a b\" or [\"a\", \"b\"]"), std::string::npos) << msg;
  msg = edit([](nlohmann::json& d) {
    d["model"]["merges"] = nlohmann::json::array({nlohmann::json::array({"a"})});
  });
  EXPECT_NE(msg.find("model.merges[0]"), std::string::npos) << msg;
  msg = edit([](nlohmann::json& d) { d["model"]["vocab"] = nlohmann::json::array({1, 2}); });
  EXPECT_NE(msg.find("model.vocab: expected an object"), std::string::npos) << msg;
  msg = edit([](nlohmann::json& d) { d["model"]["vocab"]["x"] = "seven"; });
  EXPECT_NE(msg.find("model.vocab"), std::string::npos) << msg;
  msg = edit([](nlohmann::json& d) { d["normalizer"] = {{"type", "Lowercase"}}; });
  EXPECT_NE(msg.find("normalizer.type"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Lowercase"), std::string::npos) << msg;
  msg = edit([](nlohmann::json& d) {
    d["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(?<=a)b"}}}, {"behavior", "Isolated"}};
  });
  EXPECT_NE(msg.find("pre_tokenizer.pattern.Regex"), std::string::npos) << msg;
  EXPECT_NE(msg.find("lookbehind"), std::string::npos) << msg;
  msg = edit([](nlohmann::json& d) { d["model"]["type"] = "Unigram"; });
  EXPECT_NE(msg.find("model type 'Unigram' is not supported"), std::string::npos) << msg;
  msg = edit([](nlohmann::json& d) { d["model"]["dropout"] = 0.1; });
  EXPECT_NE(msg.find("model.dropout"), std::string::npos) << msg;
  msg = edit([](nlohmann::json& d) {
    d["added_tokens"] = nlohmann::json::array({nlohmann::json{{"id", 5}}});
  });
  EXPECT_NE(msg.find("added_tokens[0]: missing key 'content'"), std::string::npos) << msg;
  msg = edit([](nlohmann::json& d) { d["decoder"] = {{"type", "WordPiece"}}; });
  EXPECT_NE(msg.find("decoder.type"), std::string::npos) << msg;

  std::string empty = hs::test::temp_dir("hs-tok-empty");
  msg = error_of([&] { Tokenizer::from_file(empty); });
  EXPECT_NE(msg.find("no tokenizer.json in this folder"), std::string::npos) << msg;
  fs::remove_all(empty);
  msg = error_of([&] { Tokenizer::from_file("/nonexistent/tokenizer.json"); });
  EXPECT_NE(msg.find("/nonexistent/tokenizer.json"), std::string::npos) << msg;
}

TEST(TokenizerErrors, BadInput) {
  auto t = char_tokenizer({});
  auto msg = error_of([&] { t->tok->encode("ab\xff"); });
  EXPECT_NE(msg.find("not valid UTF-8 at byte 2"), std::string::npos) << msg;
  std::vector<int32_t> ids = {1, 5000};
  msg = error_of([&] { t->tok->decode(ids); });
  EXPECT_NE(msg.find("token id 5000 (position 1) is not in the vocabulary"), std::string::npos) << msg;
  msg = error_of([&] { t->tok->id_to_token(-1); });
  EXPECT_NE(msg.find("token id -1"), std::string::npos) << msg;
}

// ---- regex engine: Oniguruma semantics ------------------------------------------------------------

std::vector<std::string> find_all(const std::string& pattern, const std::string& text) {
  auto re = hs::tokenizer::Regex::compile(pattern, "test");
  std::vector<std::pair<uint32_t, uint32_t>> m;
  re.find_all(text, m);
  std::vector<std::string> out;
  for (auto [b, e] : m) out.push_back(text.substr(b, e - b));
  return out;
}

const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

TEST(TokenizerRegex, QwenPatternSemantics) {
  // Worked by hand from leftmost-first alternation and greedy backtracking (HF gives the same pieces).
  EXPECT_EQ(find_all(kQwen2Pattern, "Hello  world\n\n  x 1234"),
            (std::vector<std::string>{"Hello", " ", " world", "\n\n", " ", " x", " ", "1", "2", "3", "4"}));
  // (?i:...) folds case, including U+017F LATIN SMALL LETTER LONG S ~ 's'.
  EXPECT_EQ(find_all(kQwen2Pattern, "It'S x'\xc5\xbf 'LL"),
            (std::vector<std::string>{"It", "'S", " x", "'\xc5\xbf", " '", "LL"}));
  std::string llama3 = kQwen2Pattern;
  llama3.replace(llama3.find("\\p{N}|"), 5, "\\p{N}{1,3}");
  EXPECT_EQ(find_all(llama3, "1234567"), (std::vector<std::string>{"123", "456", "7"}));
}

TEST(TokenizerRegex, Constructs) {
  EXPECT_EQ(find_all("a+?", "aaa"), (std::vector<std::string>{"a", "a", "a"}));
  EXPECT_EQ(find_all("a++a", "aaa"), (std::vector<std::string>{}));  // possessive: never gives back
  EXPECT_EQ(find_all("x{,2}y", "xxxy"), (std::vector<std::string>{"xxy"}));
  EXPECT_EQ(find_all("a{", "a{"), (std::vector<std::string>{"a{"}));  // not a quantifier: a literal
  EXPECT_EQ(find_all("(ab|a)(?=c)", "abcac"), (std::vector<std::string>{"ab", "a"}));
  EXPECT_EQ(find_all("[^\\s\\d]+",
                     "ab 12c\xc2\xa0"
                     "d"),
            (std::vector<std::string>{"ab", "c", "d"}));  // NBSP is \s
  EXPECT_EQ(find_all("\\p{Lu}\\P{L}", "aB1Cd"), (std::vector<std::string>{"B1"}));
  EXPECT_EQ(find_all("[\\x{4e00}-\\x{9fff}]+", "abc中文def"), (std::vector<std::string>{"中文"}));
  for (const char* bad : {"(?<=a)b", "\\bfoo", "[a&&b]", "\\p{Han}", "^a", "(a)\\1", "(?>a)", "(a*)*"}) {
    EXPECT_THROW(hs::tokenizer::Regex::compile(bad, "test"), hs::Error) << bad;
  }
}

// ---- Unicode ---------------------------------------------------------------------------------------

TEST(TokenizerUnicode, ClassesAndNormalization) {
  namespace uc = hs::tokenizer::unicode;
  uc::init();
  EXPECT_STREQ(uc::unicode_version(), "16.0.0");
  EXPECT_TRUE(uc::is_letter(0x1C89));  // CYRILLIC CAPITAL LETTER TJE, new in Unicode 16.0
  EXPECT_TRUE(uc::is_number(0x0661));  // ARABIC-INDIC DIGIT ONE
  EXPECT_TRUE(uc::is_white(0x85) && uc::is_white(0x3000) && uc::is_white(0x2028));
  EXPECT_FALSE(uc::is_white(0x1C) || uc::is_white(0x200B));  // bidi separator, zero-width space
  auto nfc = [](const std::string& s) {
    std::string out;
    std::vector<std::pair<uint32_t, uint32_t>> src;
    uc::normalize(s, true, out, src);
    return out;
  };
  EXPECT_EQ(nfc("e\xcc\x81"), "\xc3\xa9");                                 // e + U+0301 -> é
  EXPECT_EQ(nfc("\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8"), "\xea\xb0\x81");  // conjoining jamo -> 각
  EXPECT_EQ(nfc("a\xcc\x81\xcc\x96"), "\xc3\xa1\xcc\x96");                 // reordered, then composed
  // U+11935 U+11930 composes only since Unicode 13; HF's normalizer has 9.0 data and keeps it.
  EXPECT_EQ(nfc("\xf0\x91\xa4\xb5\xf0\x91\xa4\xb0"), "\xf0\x91\xa4\xb5\xf0\x91\xa4\xb0");
  // Invalid UTF-8 as Python's errors="replace": one U+FFFD per maximal invalid subsequence.
  EXPECT_EQ(uc::to_valid_utf8("a\xff"
                              "b"),
            "a\xef\xbf\xbd"
            "b");
  EXPECT_EQ(uc::to_valid_utf8("\xe2\x82"), "\xef\xbf\xbd");
  EXPECT_EQ(uc::to_valid_utf8("\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
}

}  // namespace
