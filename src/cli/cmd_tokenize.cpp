// `hsloth tokenize`: encode text to ids or decode ids to text with a HF tokenizer.json, one line per
// input item. Items are the whole input, or the pieces between separators when --split is given (a
// separator ends an item, so "a SEP b SEP" is two items). Encoding prints ids separated by spaces;
// --offsets prints id@begin:end (byte offsets into the item); --bos adds the post-processor's special
// tokens (add_special_tokens). Decoding reads one item of whitespace-separated ids per line and prints
// each text followed by the separator (or a newline). --bench N encodes the items N times and prints
// throughput as JSON instead, after one untimed warm-up pass (bench/tokenizer_bench.py reads it).
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/error.h"
#include "core/timer.h"
#include "io/file.h"
#include "tokenizer/tokenizer.h"

namespace {

hs::config::Schema schema() {
  hs::config::Schema s(
      "tokenize", "--tokenizer PATH (--text S | --file F) [--split SEP] [--decode] [--bos]",
      "Encode text to token ids, or decode ids to text (--decode), exactly as HF tokenizers.\n"
      "Prints one line per input item; --split SEP cuts the input into items (escapes \\n \\t\n"
      "\\r \\\\ are understood in SEP).");
  s.path("tokenizer", "", "tokenizer.json, or the folder that holds it", true);
  s.str("text", "", "the input text (for --decode: the ids)");
  s.path("file", "", "read the input from this file ('-' for standard input)");
  s.str("split", "", "separator between input items, e.g. '\\n__ggml_vocab_test__\\n'");
  s.flag("decode", "read ids (one item per line) and print the text");
  s.flag("bos", "add the special tokens of the post-processor (BOS/EOS): add_special_tokens=true");
  s.flag("offsets", "print id@begin:end with byte offsets into each item");
  s.flag("skip_special", "with --decode: leave special tokens out of the text");
  s.integer("bench", 0, "encode all items N times and print throughput as JSON", 0, 1000000);
  s.config_file(false);
  return s;
}

std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out.push_back(s[i]);
      continue;
    }
    char c = s[++i];
    switch (c) {
      case 'n':
        out.push_back('\n');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case '\\':
        out.push_back('\\');
        break;
      default:
        out.push_back('\\');
        out.push_back(c);
    }
  }
  return out;
}

// Items separated by `sep`; a trailing separator does not start an empty item.
std::vector<std::string> split_items(const std::string& text, const std::string& sep) {
  std::vector<std::string> items;
  if (sep.empty()) {
    items.push_back(text);
    return items;
  }
  size_t start = 0;
  while (true) {
    size_t at = text.find(sep, start);
    if (at == std::string::npos) {
      if (start < text.size() || items.empty()) items.push_back(text.substr(start));
      break;
    }
    items.push_back(text.substr(start, at - start));
    start = at + sep.size();
  }
  return items;
}

void write_out(const std::string& s) {
  if (!s.empty() && std::fwrite(s.data(), 1, s.size(), stdout) != s.size())
    throw hs::Error("cannot write to standard output");
}

int run_decode(const hs::tokenizer::Tokenizer& tok, const std::string& input, const std::string& source,
               const std::string& sep, bool skip_special) {
  std::vector<std::string> lines = split_items(input, "\n");
  if (input.empty()) lines.clear();
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string where = hs::str(source, ":", i + 1);
    std::vector<int32_t> ids;
    const std::string& line = lines[i];
    size_t p = 0;
    while (p < line.size()) {
      while (p < line.size() && std::isspace(static_cast<unsigned char>(line[p]))) ++p;
      if (p == line.size()) break;
      size_t q = p;
      while (q < line.size() && !std::isspace(static_cast<unsigned char>(line[q]))) ++q;
      std::string word = line.substr(p, q - p);
      char* end = nullptr;
      errno = 0;
      long long v = std::strtoll(word.c_str(), &end, 10);
      if (*end != '\0' || errno == ERANGE || v < 0 || v > INT32_MAX)
        throw hs::Error("'" + word + "' is not a token id").at(where).hint("ids are non-negative integers");
      ids.push_back(int32_t(v));
      p = q;
    }
    try {
      out += tok.decode(ids, skip_special);
    } catch (const hs::Error& e) {
      throw hs::Error(e.message()).at(where).hint(e.hint_text());
    }
    out += sep.empty() ? "\n" : sep;
  }
  write_out(out);
  return 0;
}

int run(const hs::config::Config& cfg) {
  if (cfg.given("text") == cfg.has("file"))
    throw hs::Error("give exactly one of --text and --file")
        .hint("hsloth tokenize --tokenizer T --text 'Hello'");
  std::string input, source;
  if (cfg.given("text")) {
    input = cfg.get("text");
    source = "--text";
  } else {
    source = cfg.get("file");
    if (source == "-") {
      input.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    } else {
      input = hs::io::read_file(source);
    }
  }
  std::string sep = unescape(cfg.get("split"));
  hs::Timer load_timer;
  auto tok = hs::tokenizer::Tokenizer::from_file(cfg.get("tokenizer"));
  double load_s = load_timer.seconds();
  if (cfg.get_bool("decode")) return run_decode(tok, input, source, sep, cfg.get_bool("skip_special"));

  std::vector<std::string> items = split_items(input, sep);
  const bool bos = cfg.get_bool("bos");
  int64_t reps = cfg.get_int("bench");
  if (reps > 0) {
    size_t bytes = 0, tokens = 0;
    for (const auto& it : items) bytes += it.size();
    for (size_t i = 0; i < items.size(); ++i) {  // untimed warm-up: fills the word cache
      try {
        tok.encode(items[i], bos);
      } catch (const hs::Error& e) {
        throw hs::Error(e.message()).at(hs::str(source, ": item ", i + 1)).hint(e.hint_text());
      }
    }
    hs::Timer t;
    for (int64_t r = 0; r < reps; ++r)
      for (size_t i = 0; i < items.size(); ++i) {
        tokens += tok.encode(items[i], bos).ids.size();
      }
    double s = t.seconds();
    nlohmann::ordered_json j;
    j["items"] = items.size();
    j["repeats"] = reps;
    j["bytes"] = bytes * size_t(reps);
    j["tokens"] = tokens;
    j["seconds"] = s;
    j["mb_per_s"] = s > 0 ? double(bytes) * double(reps) / s / 1e6 : 0.0;
    j["tokens_per_s"] = s > 0 ? double(tokens) / s : 0.0;
    j["load_seconds"] = load_s;
    write_out(j.dump() + "\n");
    return 0;
  }

  const bool offsets = cfg.get_bool("offsets");
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    hs::tokenizer::Encoding enc;
    try {
      enc = tok.encode(items[i], bos);
    } catch (const hs::Error& e) {
      throw hs::Error(e.message()).at(hs::str(source, ": item ", i + 1)).hint(e.hint_text());
    }
    for (size_t k = 0; k < enc.ids.size(); ++k) {
      if (k) out.push_back(' ');
      out += std::to_string(enc.ids[k]);
      if (offsets) out += hs::str("@", enc.offsets[k].first, ":", enc.offsets[k].second);
    }
    out.push_back('\n');
    if (out.size() > (1 << 20)) {
      write_out(out);
      out.clear();
    }
  }
  write_out(out);
  return 0;
}

hs::cli::Registrar reg{{"tokenize", "encode or decode text with a HF tokenizer.json", schema, run, false}};

}  // namespace
