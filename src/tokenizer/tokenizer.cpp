// Tokenizer: loads tokenizer.json (+ tokenizer_config.json) and runs HF's encode pipeline:
//   added tokens (raw pass) -> normalizer per piece -> added tokens (normalized pass) -> pre-tokenizer
//   -> BPE per piece -> post-processor,
// keeping every byte's input range so that offsets come out exact. One scratch area and one word
// cache per tokenizer are reused between calls; a concurrent call that finds them busy gets its own
// scratch and skips the cache (same results, no lock waits).
#include "tokenizer/tokenizer.h"

#include <mutex>
#include <unordered_map>

#include "core/error.h"
#include "core/log.h"
#include "io/file.h"
#include "io/json.h"
#include "io/sha256.h"
#include "tokenizer/added_vocab.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/processors.h"
#include "tokenizer/unicode.h"

namespace hs::tokenizer {

namespace {

struct Scratch {
  Work work;
  BpeCache cache;
  std::vector<BpeToken> toks;
};

std::string parent_dir(const std::string& path) {
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
}

// bos_token & co: a string, an AddedToken dict {"content": ...}, or null.
std::optional<std::string> token_name(const JsonRef& config, const char* key) {
  if (!config.has(key)) return std::nullopt;
  JsonRef v = config[key];
  if (v.is_string()) return v.str();
  if (v.is_object()) return v["content"].str();
  v.fail(str("expected a string or an {\"content\": ...} object, got ", JsonRef::type_name(v.raw())));
}

}  // namespace

struct Tokenizer::Impl {
  std::string path, sha, chat_template;
  std::optional<int64_t> model_max_length;
  SpecialTokens specials;
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<PostProcessor> post_processor;
  std::unique_ptr<Decoder> decoder;
  Bpe model;
  AddedVocab added;
  mutable std::mutex mutex;
  mutable Scratch scratch;

  void load(const std::string& file);
  void load_config(const std::string& dir);
  void run(std::string_view text, bool add_special, Encoding& enc, Scratch& s, bool use_cache) const;
  std::pair<uint32_t, uint32_t> spaces(std::string_view text, int32_t id,
                                       std::pair<uint32_t, uint32_t> off) const;
};

void Tokenizer::Impl::load(const std::string& file) {
  unicode::init();
  path = file;
  std::string bytes = io::read_file(file);
  sha = io::sha256_hex(bytes);
  ModelData data;
  nlohmann::json doc = parse_tokenizer_json(file, bytes, data);
  bytes.clear();
  bytes.shrink_to_fit();
  JsonRef root(doc, path, "");
  if (!root.is_object()) root.fail("expected a JSON object (HF tokenizer.json)");
  JsonRef jmodel = root["model"];
  std::string type = jmodel.has("type") ? jmodel["type"].str() : (jmodel.has("merges") ? "BPE" : "");
  if (type != "BPE")
    jmodel.fail(str("model type '", type, "' is not supported"),
                "hsloth supports BPE tokenizers (Llama 2/3, Mistral, Qwen2/2.5/3, TinyLlama, GPT-2 style)");
  if (root.has("normalizer")) normalizer = make_normalizer(root["normalizer"]);
  if (root.has("pre_tokenizer")) pre_tokenizer = make_pre_tokenizer(root["pre_tokenizer"]);
  if (root.has("post_processor")) post_processor = make_post_processor(root["post_processor"]);
  if (root.has("decoder")) decoder = make_decoder(root["decoder"]);
  model.load(jmodel, pre_tokenizer && pre_tokenizer->byte_level(), std::move(data));
  for (const char* key : {"truncation", "padding"})
    if (root.has(key))
      log::warn(file, ": '", key, "' is set in tokenizer.json and ignored (hsloth encodes whole texts)");

  // Added tokens get their ids as HF's add_tokens gives them: a content already in the model vocab
  // keeps that id; a new one takes the next id after the model and earlier added tokens.
  std::vector<AddedToken> tokens;
  if (root.has("added_tokens")) {
    JsonRef list = root["added_tokens"];
    std::unordered_map<std::string, int32_t> seen;
    int64_t max_added = -1;
    for (size_t i = 0; i < list.size(); ++i) {
      JsonRef t = list.at(i);
      AddedToken a;
      a.content = t["content"].str();
      a.special = t.bool_or("special", false);
      a.lstrip = t.bool_or("lstrip", false);
      a.rstrip = t.bool_or("rstrip", false);
      a.single_word = t.bool_or("single_word", false);
      a.normalized = t.bool_or("normalized", !a.special);
      int64_t declared = t.has("id") ? t["id"].integer() : -1;
      if (a.content.empty()) continue;
      int64_t id;
      if (auto it = seen.find(a.content); it != seen.end()) {
        id = it->second;
      } else if (auto m = model.token_to_id(a.content)) {
        id = *m;
      } else {
        int64_t vocab = int64_t(model.vocab_count());
        id = max_added >= 0 && (max_added >= vocab || vocab == 0) ? max_added + 1 : vocab;
      }
      if (declared >= 0 && declared != id)
        log::warn(t.where(), ": added token '", a.content, "' declares id ", declared, " but gets id ", id,
                  " (as in HF tokenizers)");
      a.id = int32_t(id);
      seen[a.content] = a.id;
      max_added = std::max<int64_t>(max_added, id);
      tokens.push_back(std::move(a));
    }
  }
  added.build(std::move(tokens), normalizer.get());
  load_config(parent_dir(file));
}

void Tokenizer::Impl::load_config(const std::string& dir) {
  std::string config_path = dir + "/tokenizer_config.json";
  std::optional<std::string> names[4];
  if (io::exists(config_path)) {
    nlohmann::json doc =
        io::read_json(config_path, {"cannot parse JSON",
                                    "the file is truncated or not JSON; download it again (it must be the "
                                    "HF tokenizers format)"});
    JsonRef config(doc, config_path, "");
    if (!config.is_object()) config.fail("expected a JSON object");
    const char* keys[4] = {"bos_token", "eos_token", "pad_token", "unk_token"};
    for (int i = 0; i < 4; ++i) names[i] = token_name(config, keys[i]);
    if (config.has("model_max_length")) {
      const nlohmann::json& v = config["model_max_length"].raw();
      constexpr double kUnsetAbove = 1e7;  // HF's "no limit" is int(1e30); real contexts are far below
      if (!v.is_number())
        log::warn(config_path, ": model_max_length is ", JsonRef::type_name(v), ", not a number; ignored");
      else if (double d = v.get<double>(); d >= 2 && d <= kUnsetAbove)
        model_max_length = int64_t(d);
    }
    if (config.has("chat_template")) {
      JsonRef ct = config["chat_template"];
      if (ct.is_string()) {
        chat_template = ct.str();
      } else if (ct.is_array()) {
        bool found = false;
        for (size_t i = 0; i < ct.size(); ++i) {
          JsonRef item = ct.at(i);
          if (item["name"].str() == "default") {
            chat_template = item["template"].str();
            found = true;
          }
        }
        if (!found) log::warn(ct.where(), ": no template named 'default'; the chat template is left empty");
      } else {
        ct.fail("expected a string or a list of {name, template}");
      }
    }
  }
  std::string jinja_path = dir + "/chat_template.jinja";
  if (chat_template.empty() && io::exists(jinja_path)) chat_template = io::read_file(jinja_path);
  // Without a config, fall back on what the model and post-processor say.
  if (!names[3] && model.unk_token()) names[3] = *model.unk_token();
  if (!names[0] && post_processor) {
    auto ids = post_processor->added_ids();
    if (!ids.first.empty()) {
      const AddedToken* t = added.by_id(ids.first[0]);
      if (t) names[0] = t->content;
    }
  }
  int32_t* ids[4] = {&specials.bos, &specials.eos, &specials.pad, &specials.unk};
  std::string* texts[4] = {&specials.bos_text, &specials.eos_text, &specials.pad_text, &specials.unk_text};
  for (int i = 0; i < 4; ++i) {
    if (!names[i]) continue;
    std::optional<int32_t> id = added.by_content(*names[i]);
    if (!id) id = model.token_to_id(*names[i]);
    if (!id) {
      log::warn(config_path, ": special token '", *names[i], "' is not in the vocabulary; ignored");
      continue;
    }
    *ids[i] = *id;
    *texts[i] = *names[i];
  }
}

std::pair<uint32_t, uint32_t> Tokenizer::Impl::spaces(std::string_view text, int32_t id,
                                                      std::pair<uint32_t, uint32_t> off) const {
  // The token's text: an added token's matched input, or the model token's bytes (a byte-level space is
  // the only whitespace there, as HF counts 'Ġ').
  std::string_view s;
  bool added_token = added.by_id(id) != nullptr;
  std::string model_text;
  if (added_token) {
    s = text.substr(off.first, off.second - off.first);
  } else if (model.byte_level()) {
    s = model.id_to_bytes(id);
  } else if (const std::string* t = model.id_to_token(id)) {
    s = *t;
  }
  auto is_space = [&](uint32_t cp) {
    return cp == ' ' || (added_token || !model.byte_level() ? unicode::is_white(cp) : false);
  };
  const auto* u = reinterpret_cast<const unsigned char*>(s.data());
  uint32_t lead = 0, trail = 0;
  size_t i = 0;
  while (i < s.size()) {
    int len;
    uint32_t cp = unicode::decode_utf8(u + i, &len);
    if (!is_space(cp)) break;
    ++lead;
    i += size_t(len);
  }
  size_t e = s.size();  // trailing spaces are counted over the whole token, as HF does
  while (e > 0) {
    size_t q = e - 1;
    while (q > 0 && (u[q] & 0xC0) == 0x80) --q;
    int len;
    if (!is_space(unicode::decode_utf8(u + q, &len))) break;
    ++trail;
    e = q;
  }
  return {lead, trail};
}

void Tokenizer::Impl::run(std::string_view text, bool add_special, Encoding& enc, Scratch& s,
                          bool use_cache) const {
  size_t bad = unicode::first_invalid_utf8(text);
  if (bad != std::string_view::npos)
    throw Error(str("the text is not valid UTF-8 at byte ", bad))
        .hint("decode the input as UTF-8 (invalid bytes can be replaced with U+FFFD) before tokenizing");
  if (text.size() > 0xFFFFFFF0u) throw Error("the text is longer than 4 GiB").hint("split it");
  enc.ids.clear();
  enc.offsets.clear();
  Work& w = s.work;
  w.reset();
  auto& pieces = w.pieces;
  pieces.clear();
  if (!text.empty()) pieces.push_back(Piece{w.view(text, 0), 0, uint32_t(text.size())});
  added.split(w, pieces, false);
  if (normalizer) {
    size_t keep = 0;
    for (size_t i = 0; i < pieces.size(); ++i) {
      Piece p = pieces[i];
      if (p.id < 0) normalizer->apply(w, p);
      if (p.e > p.b) pieces[keep++] = p;
    }
    pieces.resize(keep);
  }
  added.split(w, pieces, true);
  if (pre_tokenizer) pre_tokenizer->apply(w, pieces);
  BpeCache* cache = use_cache ? &s.cache : nullptr;
  for (const Piece& p : pieces) {
    const NText& t = w.texts[p.text];
    if (p.id >= 0) {
      Span o = t.orig(p.b, p.e);
      enc.ids.push_back(p.id);
      enc.offsets.emplace_back(o.begin, o.end);
      continue;
    }
    s.toks.clear();
    model.tokenize(t.str().substr(p.b, p.e - p.b), s.toks, cache);
    uint32_t cur = p.b;
    for (const BpeToken& k : s.toks) {
      uint32_t end = std::min(cur + k.len, p.e);
      Span o = end > cur ? t.orig(cur, end) : Span{t.orig_byte(p.e - 1).end, t.orig_byte(p.e - 1).end};
      enc.ids.push_back(k.id);
      enc.offsets.emplace_back(o.begin, o.end);
      cur = end;
    }
  }
  if (post_processor)
    post_processor->apply(
        enc, add_special, uint32_t(text.size()),
        [&](int32_t id, std::pair<uint32_t, uint32_t> off) { return spaces(text, id, off); });
}

// ---- public API ----

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_file(const std::string& path) {
  std::string file = path;
  if (io::is_directory(path)) {
    file = path + (path.empty() || path.back() == '/' ? "" : "/") + "tokenizer.json";
    if (!io::exists(file))
      throw Error("no tokenizer.json in this folder")
          .at(path)
          .hint("give the tokenizer.json file or the HF model folder that holds it");
  } else if (!io::exists(path)) {
    throw Error("no such file or folder")
        .at(path)
        .hint("give a tokenizer.json file or the folder that holds it");
  }
  auto impl = std::make_unique<Impl>();
  impl->load(file);
  return Tokenizer(std::move(impl));
}

Encoding Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  Encoding enc;
  std::unique_lock<std::mutex> lock(impl_->mutex, std::try_to_lock);
  if (lock.owns_lock()) {
    impl_->run(text, add_special_tokens, enc, impl_->scratch, true);
  } else {
    Scratch local;
    impl_->run(text, add_special_tokens, enc, local, false);
  }
  return enc;
}

std::vector<int32_t> Tokenizer::encode_ids(std::string_view text, bool add_special_tokens) const {
  return encode(text, add_special_tokens).ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    int32_t id = ids[i];
    std::string t;
    if (const AddedToken* a = impl_->added.by_id(id)) {
      t = a->text;
    } else if (const std::string* m = impl_->model.id_to_token(id)) {
      t = *m;
    } else {
      throw Error(str("token id ", id, " (position ", i, ") is not in the vocabulary (ids 0..",
                      vocab_size() - 1, ")"))
          .at(impl_->path)
          .hint("the ids were made with a different tokenizer");
    }
    if (skip_special_tokens && impl_->added.is_special_content(t)) continue;
    tokens.push_back(std::move(t));
  }
  if (!impl_->decoder) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
    return out;
  }
  impl_->decoder->decode_chain(tokens);
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

int32_t Tokenizer::vocab_size() const {
  int32_t n = impl_->model.vocab_size();
  for (const auto& t : impl_->added.tokens()) n = std::max(n, t.id + 1);
  return n;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (auto id = impl_->added.by_content(token)) return id;
  return impl_->model.token_to_id(token);
}

std::string Tokenizer::id_to_token(int32_t id) const {
  if (const AddedToken* a = impl_->added.by_id(id)) return a->text;
  if (const std::string* m = impl_->model.id_to_token(id)) return *m;
  throw Error(str("token id ", id, " is not in the vocabulary (ids 0..", vocab_size() - 1, ")"))
      .at(impl_->path);
}

bool Tokenizer::is_special(int32_t id) const {
  const AddedToken* a = impl_->added.by_id(id);
  return a && a->special;
}

const SpecialTokens& Tokenizer::specials() const { return impl_->specials; }
const std::string& Tokenizer::sha256() const { return impl_->sha; }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }
std::optional<int64_t> Tokenizer::model_max_length() const { return impl_->model_max_length; }
const std::string& Tokenizer::path() const { return impl_->path; }

}  // namespace hs::tokenizer
