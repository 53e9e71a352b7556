// Record formats of `hsloth prep` and their mapping to a chat Conversation (or plain text):
//   alpaca    {"instruction", "input"?, "output", "system"?, "history"?: [[user, assistant], ...]}
//   sharegpt  {"conversations" | "messages": [{"from" | "role": human|user|gpt|assistant|system|...,
//              "value" | "content": ...}], "system"?}
//   messages  {"messages": [{"role": system|user|assistant, "content": str | [{"type":"text","text":...}],
//              "reasoning_content" | "reasoning"?}]} (reasoning: qwen3's <think> text)
//   text      {"text": ...}: trained on as is (no chat template)
// `auto` looks at the first record of each file: "instruction" -> alpaca (even when a "text" field is also
// there, as in Stanford Alpaca), "conversations" -> sharegpt, "messages" -> messages or sharegpt by the
// keys of its items, "text" -> text.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/chat_template.h"

namespace hs::data_tools {

enum class Format { alpaca, sharegpt, messages, text };

std::string format_name(Format f);
// "auto" -> nullopt; an unknown name is an hs::Error listing the choices.
std::optional<Format> parse_format(const std::string& name);
std::vector<std::string> format_names();  // with "auto" first

// Chooses a format from a record's keys; `why` receives a short explanation ("has 'instruction'").
// Throws hs::Error listing the keys it saw when none fits (caller adds the location).
Format detect_format(const nlohmann::json& record, std::string* why = nullptr);

// A record in a template-neutral form.
struct Example {
  Format format = Format::text;
  std::string text;  // format text
  // alpaca: the row (the template decides how instruction and input combine)
  std::string instruction, input, output;
  // alpaca "system"/"history", and the turns of sharegpt/messages
  std::vector<tokenizer::Message> messages;
};

// Reads a record of the given format. Throws hs::Error saying what is wrong ("'output' is missing",
// "conversations[2] has unknown role 'tool'"); the caller adds the location.
Example to_example(const nlohmann::json& record, Format format);

// The conversation a template renders for an example (not for text).
tokenizer::Conversation to_conversation(const Example& example, const tokenizer::ChatTemplate& chat_template);

}  // namespace hs::data_tools
