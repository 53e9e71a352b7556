// Chat templates as C++ renderers, byte-identical to HF `apply_chat_template(messages, tokenize=False,
// add_generation_prompt=...)` with the model's own Jinja template (tests use transformers as the oracle).
// Each family is a small hand-written renderer that mirrors every branch of its Jinja template that a
// system/user/assistant conversation can reach, and for qwen2.5 and llama3 also tool use: a conversation's
// `tools` (HF apply_chat_template(tools=...)), assistant `tool_calls` and `tool` messages. Other families
// reject tools, tool calls and the `tool` role by name.
// A render also returns the byte spans of the text the model is trained on, one span list per assistant
// turn, so prep can build `response` loss masks (all assistant turns or the last one only).
//
// Families (name(): what `named()` accepts; `auto` resolves to one of them):
//   chatml   plain ChatML: <|im_start|>role\n…<|im_end|>\n per message, nothing added (the classic
//            template: '<|im_start|>' + role + '\n' + content + '<|im_end|>' + '\n').
//   qwen2.5  Qwen2/2.5 ChatML (chat_templates/Qwen-Qwen2.5-7B-Instruct.jinja): inserts Qwen's default system
//            message ("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.") when none is
//            first; tools go into the system message (# Tools … <tools>one tojson per line</tools> …), a
//            tool call prints as \n<tool_call>\n{"name": …, "arguments": tojson}\n</tool_call> after the
//            content, consecutive tool messages share one user turn of <tool_response> blocks.
//   qwen3    Qwen3 ChatML with reasoning: an assistant turn after the last user query is printed as
//            <think>\nREASONING\n</think>\n\nCONTENT (reasoning from Message::reasoning, or split off a
//            content holding <think>…</think>); the last turn always gets the block (empty if no reasoning);
//            earlier turns lose their reasoning. RenderOptions::enable_thinking = false appends the empty
//            block <think>\n\n</think>\n\n to the generation prompt. No default system message.
//   llama3   Llama 3.1: BOS, a system header with "Cutting Knowledge Date: December 2023" and
//            "Today Date: <date>" (TemplateContext::date_string, default "26 Jul 2024" as the template; or
//            today's date, "%d %b %Y", when the context's Jinja calls strftime_now, as Llama 3.2's does),
//            contents trimmed (Python str.strip), <|eot_id|> after each turn. Tools (tools_in_user_message,
//            the default): "Environment: ipython" in the system header and the tool list (tojson, indent 4)
//            in the first user turn; a tool call is {"name": …, "parameters": tojson} (one per message); a
//            tool message is an ipython turn whose content is printed through tojson, as the template does.
//   llama3.0 Meta-Llama-3-8B-Instruct: BOS, then <|start_header_id|>ROLE<|end_header_id|>\n\n + trimmed
//            content + <|eot_id|> per message; no system header of its own, no tools.
//   llama2   Llama-2-chat: <s>[INST] <<SYS>>\nSYS\n<</SYS>>\n\nUSER [/INST] ASSISTANT </s> per exchange;
//            user/assistant must alternate starting with user; a system message only first.
//   mistral  Mistral-7B-Instruct-v0.1: <s>[INST] USER [/INST]ASSISTANT</s>; user/assistant only, alternating.
//   zephyr   TinyLlama/Zephyr: <|role|>\nCONTENT</s>\n per message (no BOS in the text).
//   alpaca   Stanford Alpaca prompt (below), EOS after the response.
//   none     plain text: the contents concatenated, nothing added (no BOS/EOS); the whole text trainable.
//   custom   CustomTemplate: role prefixes/suffixes.
//
// Alpaca mapping: messages are [system?] user [input?] [assistant?]. `user` is the instruction, the
// optional `input` message (a role only this family accepts) the "### Input:" text, `system` replaces the
// preamble sentence. An empty or missing input selects the no-input variant:
//   with input: "Below is an instruction that describes a task, paired with an input that provides
//               further context. Write a response that appropriately completes the request.\n\n
//               ### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n{output}{eos}"
//   no input:   "Below is an instruction that describes a task. Write a response that appropriately
//               completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n{output}{eos}"
// (the line breaks inside the quoted preambles above are only for this comment). Without an assistant
// message (add_generation_prompt) the text ends at "### Response:\n". ChatTemplate::alpaca_row() builds the
// right conversation for any family (other families get the input joined to the instruction).
//
// BOS: the text holds BOS exactly where the family's HF template prints it (llama2 per exchange, llama3,
// llama3.0 and mistral once at the start); chatml, qwen2.5, qwen3, zephyr, alpaca and none print none. Encode
// the text with special-token parsing and without adding special tokens (HF
// apply_chat_template(tokenize=True) does the same); for alpaca/none a tokenizer that adds BOS by default may
// add it.
//
// Trainable spans (Rendered::assistant_spans): one entry per assistant message, in order, each a list of
// byte ranges [begin, end) into text (one range for every built-in family). A range covers what the
// assistant turn prints after its role header, through its end-of-turn marker:
//   chatml, qwen2.5, qwen3   CONTENT<|im_end|>  (qwen3: with its <think>…</think>\n\n block when printed;
//                   qwen2.5: with its tool calls); not "<|im_start|>assistant\n", not the "\n" after
//                   <|im_end|>
//   llama3, llama3.0  trim(CONTENT)<|eot_id|> or the tool call JSON + <|eot_id|> (not the
//                   <|start_header_id|>assistant<|end_header_id|>\n\n)
//   llama2          " " strip(CONTENT) " </s>" (the leading space: SentencePiece glues it to the first word)
//   mistral         CONTENT</s>
//   zephyr          CONTENT</s>  (not "<|assistant|>\n", not the "\n" after </s>)
//   alpaca          OUTPUT</s>   (the text after "### Response:\n")
//   custom          CONTENT + the assistant suffix (the suffix is the end-of-turn marker)
//   none            one entry with the whole text [0, size) whatever the roles (none if the text is empty)
// The generation prompt is never trainable.
//
// Errors (hs::Error; prep adds the sample with .at()): an empty conversation, a role the family does not
// know (`tool` outside qwen2.5/llama3), tools or tool calls given to a family without tool calling, roles
// that do not alternate where the template requires it, a system message where the template has no place
// for it, reasoning given to a family that would drop it, and (llama3) what HF's template would raise on or
// silently drop: two calls in one message, text next to a call, tools without a first user message; at
// construction, a family that ends turns with EOS (llama2, mistral, zephyr, alpaca) and no EOS text.
//
// auto: <|im_start|> + <think> + Qwen3's last_query_index rule -> qwen3; <|im_start|> + Qwen's default
// system text -> qwen2.5; the classic ChatML template (compared as text) -> chatml;
// <|start_header_id|> + "Cutting Knowledge Date" -> llama3; Meta-Llama-3-8B-Instruct's template (compared
// as text, whitespace between tags ignored) -> llama3.0; <|user|> ending turns with eos_token -> zephyr;
// <<SYS>> -> llama2;
// '[INST] ' … ' [/INST]' -> mistral. A template that carries a family's marker but differs where it
// matters (other ChatML variants, Phi-3, Mistral v0.3, QwQ) is an error naming what was seen, never a
// silently different render.
//
// Markers (special_markers(), check_markers()): the special tokens a family's text is built from
// (<|im_start|>, <|im_end|>; qwen3 also <think>, </think>; llama3/llama3.0 <|start_header_id|>,
// <|end_header_id|>, <|eot_id|>; and the BOS/EOS text where the family prints it). Each must be one token
// of the tokenizer in use: split into pieces, the model never sees its real turn markers (e.g. a Qwen
// tokenizer with llama3 trains "<|eot_id|>" as ~6 text tokens). Text that the original template also
// prints as plain text ([INST], <<SYS>>, <|user|>, ### Instruction:) is not a marker.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hs::tokenizer {

// What a template needs from the tokenizer: the text of BOS/EOS, and the model's own Jinja template (for
// `auto`). Tokenizer::specials() and Tokenizer::chat_template() supply these.
struct TemplateContext {
  std::string bos_text, eos_text;
  std::string jinja;        // tokenizer_config.json chat_template, "" if none
  std::string date_string;  // llama3 "Today Date:"; "" = the template's default (see above)
};

// One function call of an assistant message (HF: {"type": "function", "function": {name, arguments}}).
struct ToolCall {
  std::string name;
  std::string arguments;  // JSON text of the arguments (an object as a rule), printed through tojson
};

struct Message {
  std::string role;  // system | user | assistant | tool (| input for alpaca); others are an error
  std::string content;
  std::string reasoning;  // qwen3: text inside <think>…</think> for assistant turns ("" = none given: a
                          // <think>…</think> at the start of content is then split off, as HF does)
  std::vector<ToolCall> tool_calls;  // assistant: the calls it makes (qwen2.5, llama3)
};

struct Conversation {
  std::vector<Message> messages;
  // JSON text of each tool schema, as passed to HF apply_chat_template(tools=...) (key order kept).
  std::vector<std::string> tools;
};

struct Rendered {
  std::string text;
  // Byte ranges [begin, end) of trainable text, grouped per assistant turn in order (see above).
  std::vector<std::vector<std::pair<size_t, size_t>>> assistant_spans;
};

struct RenderOptions {
  bool add_generation_prompt = false;  // append the assistant header (families that have one)
  bool enable_thinking = true;         // qwen3: false = HF's enable_thinking=False (empty <think> block)
};

// User-defined template: text around each role's content. `{bos}` and `{eos}` expand to the tokenizer's
// in every field. Text = bos + for each message (prefix + content + suffix) [+ generation prompt]. An
// empty generation_prompt means the assistant prefix. Roles without an entry are an error.
struct CustomTemplate {
  std::string bos;                                                          // printed once at the start
  std::map<std::string, std::pair<std::string, std::string>> role_affixes;  // role -> (prefix, suffix)
  std::string generation_prompt;                                            // assistant prefix
};

class ChatTemplate {
 public:
  // name: one of families() or "auto" (picks the family from context.jinja by its markers, e.g.
  // <|im_start|> with <think> -> qwen3). Throws hs::Error listing the valid names on an unknown one, or
  // naming what it saw when auto cannot tell (hint: pass --template).
  static ChatTemplate named(const std::string& name, const TemplateContext& context);
  static ChatTemplate custom(const CustomTemplate& spec, const TemplateContext& context);

  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;
  ~ChatTemplate();

  Rendered render(const Conversation& conversation, bool add_generation_prompt = false) const;
  Rendered render(const Conversation& conversation, const RenderOptions& options) const;
  // The family ("chatml", …, "custom"); for "auto" the family it resolved to.
  const std::string& name() const;
  // The built-in family names accepted by named() (besides "auto").
  static std::vector<std::string> families();
  // Whether the family renders tools, tool calls and tool messages (qwen2.5, llama3).
  bool supports_tools() const;

  // The special tokens this family's text is built from (see above), each of which must be one token.
  std::vector<std::string> special_markers() const;
  // Throws hs::Error naming the first marker whose token_count is not 1, this template and
  // `tokenizer_name`, with a hint (the matching template, --template auto, or --allow-split-markers).
  void check_markers(const std::function<size_t(std::string_view)>& token_count,
                     const std::string& tokenizer_name) const;

  // One Alpaca row as a conversation for this family: alpaca keeps the input as its own `input` message;
  // every other family gets one user message "instruction\n\ninput" (just the instruction when the input
  // is empty). The output is the assistant message (drop it to render a generation prompt).
  Conversation alpaca_row(const std::string& instruction, const std::string& input,
                          const std::string& output) const;

  struct Impl;

 private:
  explicit ChatTemplate(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hs::tokenizer
