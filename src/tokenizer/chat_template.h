// Chat templates as C++ renderers, byte-identical to HF `apply_chat_template` with the model's own Jinja
// template (tests use transformers as the oracle). A render also returns the byte spans of the text the
// model is trained on (assistant content plus its end-of-turn token), one span list per assistant turn,
// so prep can build `response` loss masks (all assistant turns or the last one only).
//
// Families: chatml (Qwen2/2.5), qwen3 (reasoning), llama3, llama2, mistral, zephyr (TinyLlama), alpaca,
// none (plain text), and `custom` from role prefixes/suffixes given in the INI.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace hs::tokenizer {

// What a template needs from the tokenizer: the text of BOS/EOS, and the model's own Jinja template (for
// `auto`). Tokenizer::specials() and Tokenizer::chat_template() supply these.
struct TemplateContext {
  std::string bos_text, eos_text;
  std::string jinja;  // tokenizer_config.json chat_template, "" if none
};

struct Message {
  std::string role;       // system | user | assistant (others are an error naming the sample)
  std::string content;
  std::string reasoning;  // qwen3: text inside <think>…</think> for assistant turns ("" = none given)
};

struct Conversation {
  std::vector<Message> messages;
};

struct Rendered {
  std::string text;
  // Byte ranges [begin, end) of trainable text, grouped per assistant turn in order.
  std::vector<std::vector<std::pair<size_t, size_t>>> assistant_spans;
};

// User-defined template: text around each role's content. `{bos}` and `{eos}` expand to the tokenizer's.
struct CustomTemplate {
  std::string bos;  // printed once at the start
  std::map<std::string, std::pair<std::string, std::string>> role_affixes;  // role -> (prefix, suffix)
  std::string generation_prompt;                                            // assistant prefix
};

class ChatTemplate {
 public:
  // name: one of the families above or "auto" (picks the family from context.jinja).
  // Throws hs::Error listing the valid names on an unknown one, or when auto cannot tell.
  static ChatTemplate named(const std::string& name, const TemplateContext& context);
  static ChatTemplate custom(const CustomTemplate& spec, const TemplateContext& context);

  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;
  ~ChatTemplate();

  Rendered render(const Conversation& conversation, bool add_generation_prompt = false) const;
  const std::string& name() const;
  static std::vector<std::string> families();

  struct Impl;

 private:
  explicit ChatTemplate(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hs::tokenizer
