// Tokenizer tests against independent references: the llama.cpp/HF vectors in shared/data
// (tokenizer-vectors/*.inp/.out, made with HF tokenizers), the tokenizer.json/tokenizer_config.json files
// themselves (ids of special tokens, templates), HF's own added-token test cases (added_vocabulary.rs),
// the GPT-2 byte map and the SentencePiece conventions for offsets, Unicode facts, and regex semantics.
// The full random-corpus comparison with HF tokenizers lives in tests/parity/tokenizer_parity.py.
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
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
  for (int32_t id : ids) s += " " + std::to_string(id);
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

}  // namespace
