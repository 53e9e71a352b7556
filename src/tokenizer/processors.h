// Post-processors (what add_special_tokens adds: TemplateProcessing, RobertaProcessing, BertProcessing,
// ByteLevel's offset trimming, Sequence) and decoders (ByteLevel, Replace, ByteFallback, Fuse, Strip,
// Metaspace, Sequence) of HF tokenizer.json, each doing what its HF namesake does.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/json_reader.h"
#include "tokenizer/tokenizer.h"

namespace hs::tokenizer {

// Leading and trailing space bytes of a token, given its id and offsets (for trim_offsets).
using SpaceCounter = std::function<std::pair<uint32_t, uint32_t>(int32_t, std::pair<uint32_t, uint32_t>)>;

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Tokens it adds get empty offsets: at 0 before the sequence, at text_len after it.
  virtual void apply(Encoding& enc, bool add_special, uint32_t text_len,
                     const SpaceCounter& spaces) const = 0;
  // Ids it adds before and after the sequence when add_special is true (for BOS/EOS discovery).
  virtual std::pair<std::vector<int32_t>, std::vector<int32_t>> added_ids() const = 0;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

std::unique_ptr<PostProcessor> make_post_processor(const JsonRef& j);
std::unique_ptr<Decoder> make_decoder(const JsonRef& j);

}  // namespace hs::tokenizer
