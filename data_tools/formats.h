// Record formats of `hsloth prep` and their mapping to a chat Conversation (or plain text):
//   alpaca    {"instruction", "input"?, "output", "system"?, "history"?: [[user, assistant], ...]}
//   sharegpt  {"conversations" | "messages": [{"from" | "role": human|user|gpt|assistant|system|
//              function_call|observation|..., "value" | "content": ...}], "system"?, "tools"?}
//   messages  {"messages": [{"role": system|user|assistant|tool, "content": str | parts,
//              "reasoning_content" | "reasoning"?, "tool_calls"?}], "tools"?} (reasoning: qwen3's <think>)
//   text      {"text": ...} and no message keys (role, from, message_id, parent_id): trained on as is
// Content parts (OpenAI / LLaMA-Factory style): [{"type": "text", "text" | "value": ...}, ...] or plain
// strings, joined without a separator (as multimodal templates print text parts); other part types are an
// error. Tools (LLaMA-Factory glaive_toolcall conventions mapped to transformers'): a `function_call` turn
// is an assistant message whose value is the call JSON {"name", "arguments"} (or a list of calls); an
// `observation` turn is a `tool` message; the record's `tools` (a list, or a JSON string of one) holds the
// function schemas, each wrapped as {"type": "function", "function": schema} unless it already is. They
// render only with templates that have tool calling (qwen2.5, llama3); others reject them by name.
// Refused by name, never read as something else: preference data ("chosen" + "rejected": DPO is not
// supported yet) and OpenAssistant message trees (records with "message_id"/"parent_id", each one message
// of a tree, or tree exports with "message_tree_id"): prep reads conversations, not trees.
// `auto` looks at the first record of each file: "instruction" -> alpaca (even when a "text" field is also
// there, as in Stanford Alpaca), "conversations" -> sharegpt, "messages" -> messages or sharegpt by the
// keys of its items, "text" without message keys -> text.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/chat_template.h"

namespace hs::data_tools {

enum class Format { alpaca, sharegpt, messages, text };

// A parsed record; key order is kept (tool schemas and call arguments are printed in the file's order).
using Record = nlohmann::ordered_json;

std::string format_name(Format f);
// "auto" -> nullopt; an unknown name is an hs::Error listing the choices.
std::optional<Format> parse_format(const std::string& name);
std::vector<std::string> format_names();  // with "auto" first

// Chooses a format from a record's keys; `why` receives a short explanation ("has 'instruction'").
// Throws hs::Error listing the keys it saw when none fits (caller adds the location).
Format detect_format(const Record& record, std::string* why = nullptr);

// A record in a template-neutral form.
struct Example {
  Format format = Format::text;
  std::string text;  // format text
  // alpaca: the row (the template decides how instruction and input combine)
  std::string instruction, input, output;
  // alpaca "system"/"history", and the turns of sharegpt/messages
  std::vector<tokenizer::Message> messages;
  std::vector<std::string> tools;  // JSON text of each tool schema (sharegpt/messages "tools")
};

// Reads a record of the given format. Throws hs::Error saying what is wrong ("'output' is missing",
// "conversations[2] has unknown role 'tool'"); the caller adds the location.
Example to_example(const Record& record, Format format);

// The conversation a template renders for an example (not for text).
tokenizer::Conversation to_conversation(const Example& example, const tokenizer::ChatTemplate& chat_template);

}  // namespace hs::data_tools
