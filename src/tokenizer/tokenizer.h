// HF `tokenizer.json` tokenizer, exact to HF `tokenizers`: byte-level BPE (GPT-2, Llama-3, Qwen2/2.5/3
// split regexes) and SentencePiece-style BPE with byte fallback (Llama-2, TinyLlama, Mistral), NFC and the
// Metaspace/Prepend/Replace normalizers, added tokens matched before the model with their flags, and the
// post-processor's BOS/EOS. The implementation lives behind a pimpl so this header stays cheap to include.
//
// Offsets are byte ranges [begin, end) into the *input* text; a token made of several input bytes covers
// all of them, and tokens produced by the post-processor (BOS/EOS) have an empty range at 0 or at the end.
// Prep uses them to turn the chat template's trainable byte spans into a per-token loss mask. Where HF
// reports character offsets, these are exact bytes: a byte-level token holding part of a character covers
// just its bytes, and a character that NFC composed (or a Replace merged) covers all the input it came
// from (HF keeps the first input character's range there). Elsewhere they equal HF's, in bytes.
//
// Thread safety: encode/decode are const and may run concurrently (one call at a time uses the shared
// scratch area and word cache, the others their own).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hs::tokenizer {

struct Encoding {
  std::vector<int32_t> ids;
  std::vector<std::pair<uint32_t, uint32_t>> offsets;  // same length as ids
};

// Ids of the special tokens a trainer and a chat template need; -1 where the tokenizer has none.
struct SpecialTokens {
  int32_t bos = -1, eos = -1, pad = -1, unk = -1;
  std::string bos_text, eos_text, pad_text, unk_text;
};

class Tokenizer {
 public:
  // `path` is a tokenizer.json file or the folder that holds it. A tokenizer_config.json beside it (if
  // any) supplies bos/eos/pad token names and the chat template. Throws hs::Error naming the file and
  // the JSON key on anything it cannot read or does not support.
  static Tokenizer from_file(const std::string& path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // add_special_tokens applies the post-processor (e.g. BOS for Llama), like HF's encode(...,
  // add_special_tokens).
  Encoding encode(std::string_view text, bool add_special_tokens = false) const;
  std::vector<int32_t> encode_ids(std::string_view text, bool add_special_tokens = false) const;
  // HF's decode: the decoder over the token strings (added tokens as their text; normalized ones as
  // their normalized text). For text without added-token text it inverts encode up to the normalizer
  // (NFC). Invalid byte sequences from arbitrary ids become U+FFFD as in HF. An id outside the
  // vocabulary is an hs::Error (HF skips it silently).
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  int32_t vocab_size() const;  // model vocab + added tokens (max id + 1)
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::string id_to_token(int32_t id) const;  // throws hs::Error for an id outside the vocabulary
  bool is_special(int32_t id) const;          // an added token marked special
  const SpecialTokens& specials() const;
  const std::string& sha256() const;         // hex sha256 of the tokenizer.json bytes
  const std::string& chat_template() const;  // raw Jinja from tokenizer_config.json, or ""
  // tokenizer_config.json's model_max_length when it is a real limit (2 .. 10M tokens); nullopt when
  // absent or "unset" (HF writes ~1e30 for that).
  std::optional<int64_t> model_max_length() const;
  const std::string& path() const;           // resolved tokenizer.json path

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hs::tokenizer
