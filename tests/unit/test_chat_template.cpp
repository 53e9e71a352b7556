// Chat template edge cases and errors. Byte parity with HF lives in tests/parity/chat_template_parity.py;
// here: what must be rejected (and how the error reads), `auto` on the real tokenizer templates, custom
// templates, alpaca mapping, Python whitespace semantics and span bookkeeping on hand-checked strings.
#include <gtest/gtest.h>

#include <ctime>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/file.h"
#include "support/test_support.h"
#include "tokenizer/chat_template.h"

using namespace hs::tokenizer;

namespace {

TemplateContext llama_ctx() { return {"<s>", "</s>", "", ""}; }
TemplateContext qwen_ctx() { return {"", "<|im_end|>", "", ""}; }

Conversation conv(std::vector<Message> messages) { return Conversation{std::move(messages)}; }
Message user(std::string c) { return {"user", std::move(c), ""}; }
Message assistant(std::string c, std::string r = "") { return {"assistant", std::move(c), std::move(r)}; }
Message sys_msg(std::string c) { return {"system", std::move(c), ""}; }

// The error message thrown by fn (fails the test when nothing or something else is thrown).
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const hs::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected hs::Error";
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::vector<std::string> span_texts(const Rendered& r) {
  std::vector<std::string> out;
  for (const auto& turn : r.assistant_spans) {
    std::string t;
    for (const auto& [b, e] : turn) {
      EXPECT_LE(b, e);
      EXPECT_LE(e, r.text.size());
      t += r.text.substr(b, e - b);
    }
    out.push_back(t);
  }
  return out;
}

std::string read_testdata(const std::string& rel) {
  return hs::io::read_file(hs::test::testdata_dir() + "/" + rel);
}

}  // namespace

TEST(ChatTemplate, FamiliesListedAndNamed) {
  auto names = ChatTemplate::families();
  EXPECT_EQ(names, (std::vector<std::string>{"chatml", "qwen2.5", "qwen3", "llama3", "llama3.0", "llama2",
                                             "mistral", "zephyr", "alpaca", "none"}));
  for (const auto& n : names) EXPECT_EQ(ChatTemplate::named(n, llama_ctx()).name(), n);
}

TEST(ChatTemplate, UnknownNameListsValidOnes) {
  auto msg = error_of([] { ChatTemplate::named("vicuna", llama_ctx()); });
  EXPECT_TRUE(contains(msg, "unknown chat template 'vicuna'")) << msg;
  EXPECT_TRUE(
      contains(msg, "chatml, qwen2.5, qwen3, llama3, llama3.0, llama2, mistral, zephyr, alpaca, none"))
      << msg;
  msg = error_of([] { ChatTemplate::named("custom", llama_ctx()); });
  EXPECT_TRUE(contains(msg, "prefixes and suffixes")) << msg;
}

TEST(ChatTemplate, FamiliesEndingTurnsWithEosNeedOne) {
  TemplateContext no_eos{"<s>", "", "", ""};
  for (const std::string n : {"llama2", "mistral", "zephyr", "alpaca"}) {
    auto msg = error_of([&] { ChatTemplate::named(n, no_eos); });
    EXPECT_TRUE(contains(msg, "no EOS token")) << n << ": " << msg;
  }
  for (const std::string n : {"chatml", "qwen3", "llama3", "none"})
    EXPECT_NO_THROW(ChatTemplate::named(n, no_eos));
}

TEST(ChatTemplate, EmptyConversationIsAnErrorEverywhere) {
  for (const auto& n : ChatTemplate::families()) {
    auto t = ChatTemplate::named(n, llama_ctx());
    auto msg = error_of([&] { t.render(Conversation{}); });
    EXPECT_TRUE(contains(msg, "no messages")) << n << ": " << msg;
  }
  CustomTemplate spec;
  spec.role_affixes["user"] = {"U:", "\n"};
  auto t = ChatTemplate::custom(spec, llama_ctx());
  EXPECT_TRUE(contains(error_of([&] { t.render(Conversation{}); }), "no messages"));
}

TEST(ChatTemplate, ToolAndUnknownRolesAreRejected) {
  for (const std::string n : {"chatml", "qwen3", "llama3.0", "llama2", "mistral", "zephyr", "none"}) {
    auto t = ChatTemplate::named(n, qwen_ctx());
    auto msg = error_of([&] { t.render(conv({user("hi"), assistant("x"), {"tool", "42", ""}})); });
    EXPECT_TRUE(contains(msg, "message 2 has role 'tool'")) << n << ": " << msg;
    EXPECT_TRUE(contains(msg, "--template qwen2.5 or llama3")) << msg;
    msg = error_of([&] { t.render(conv({{"human", "hi", ""}})); });
    EXPECT_TRUE(contains(msg, "message 0 has role 'human'")) << n << ": " << msg;
    EXPECT_TRUE(contains(msg, "human -> user")) << msg;
  }
}

TEST(ChatTemplate, AlternationRules) {
  auto llama2 = ChatTemplate::named("llama2", llama_ctx());
  auto msg = error_of([&] { llama2.render(conv({user("a"), user("b")})); });
  EXPECT_TRUE(contains(msg, "roles must alternate")) << msg;
  EXPECT_TRUE(contains(msg, "message 1 is 'user'")) << msg;
  msg = error_of([&] { llama2.render(conv({sys_msg("s"), assistant("a")})); });
  EXPECT_TRUE(contains(msg, "message 1 is 'assistant' where 'user' is expected")) << msg;
  msg = error_of([&] { llama2.render(conv({user("a"), assistant("b"), sys_msg("s"), user("c")})); });
  EXPECT_TRUE(contains(msg, "message 2 is a system message")) << msg;

  auto mistral = ChatTemplate::named("mistral", llama_ctx());
  msg = error_of([&] { mistral.render(conv({assistant("a")})); });
  EXPECT_TRUE(contains(msg, "roles must alternate")) << msg;
  msg = error_of([&] { mistral.render(conv({sys_msg("s"), user("a")})); });
  EXPECT_TRUE(contains(msg, "role 'system'")) << msg;
  EXPECT_TRUE(contains(msg, "no system role")) << msg;

  // Templates without the rule accept any order.
  for (const std::string n : {"chatml", "qwen3", "llama3", "zephyr"}) {
    auto t = ChatTemplate::named(n, qwen_ctx());
    EXPECT_NO_THROW(t.render(conv({user("a"), user("b"), assistant("c"), assistant("d"), sys_msg("e")})))
        << n;
  }
}

TEST(ChatTemplate, ReasoningOnlyWhereKept) {
  auto llama3 = ChatTemplate::named("llama3", llama_ctx());
  auto msg = error_of([&] { llama3.render(conv({user("q"), assistant("a", "because")})); });
  EXPECT_TRUE(contains(msg, "has reasoning")) << msg;
  EXPECT_TRUE(contains(msg, "qwen3")) << msg;
  auto qwen3 = ChatTemplate::named("qwen3", qwen_ctx());
  msg = error_of([&] { qwen3.render(conv({{"user", "q", "thinking"}})); });
  EXPECT_TRUE(contains(msg, "message 0 (user) has reasoning")) << msg;
}

TEST(ChatTemplate, Qwen25SpansAndDefaultSystem) {
  auto t = ChatTemplate::named("qwen2.5", qwen_ctx());
  auto r = t.render(conv({user("hi"), assistant("yo"), user(""), assistant("")}), true);
  EXPECT_EQ(
      r.text,
      "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
      "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n"
      "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(span_texts(r), (std::vector<std::string>{"yo<|im_end|>", "<|im_end|>"}));
}

// Issue #10: chatml is plain ChatML; Qwen's default system message belongs to qwen2.5 only.
TEST(ChatTemplate, ChatmlIsPlainChatml) {
  auto t = ChatTemplate::named("chatml", qwen_ctx());
  auto r = t.render(conv({user("hi"), assistant("yo")}), false);
  EXPECT_EQ(r.text, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n");
  EXPECT_FALSE(contains(r.text, "You are Qwen"));
  EXPECT_EQ(span_texts(r), (std::vector<std::string>{"yo<|im_end|>"}));
  EXPECT_EQ(t.render(conv({sys_msg("S"), user("q")}), true).text,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n");
}

// Issue #10: Meta-Llama-3-8B-Instruct's template: no 3.1 system header, contents trimmed.
TEST(ChatTemplate, Llama30HasNoSystemHeader) {
  TemplateContext ctx{"<|begin_of_text|>", "<|eot_id|>", "", ""};
  auto t = ChatTemplate::named("llama3.0", ctx);
  auto r = t.render(conv({user(" hi "), assistant("yo\n")}), false);
  EXPECT_EQ(r.text,
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nyo<|eot_id|>");
  EXPECT_EQ(span_texts(r), (std::vector<std::string>{"yo<|eot_id|>"}));
  EXPECT_FALSE(contains(t.render(conv({sys_msg("s"), user("q")}), true).text, "Cutting Knowledge"));
}

// Issue #10: every special marker of a template must be one token of the tokenizer in use.
TEST(ChatTemplate, MarkersMustBeSingleTokens) {
  TemplateContext l3{"<|begin_of_text|>", "<|eot_id|>", "", ""};
  EXPECT_EQ(ChatTemplate::named("llama3", l3).special_markers(),
            (std::vector<std::string>{"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                                      "<|eot_id|>"}));
  EXPECT_EQ(ChatTemplate::named("chatml", qwen_ctx()).special_markers(),
            (std::vector<std::string>{"<|im_start|>", "<|im_end|>"}));
  EXPECT_EQ(ChatTemplate::named("qwen3", qwen_ctx()).special_markers(),
            (std::vector<std::string>{"<|im_start|>", "<|im_end|>", "<think>", "</think>"}));
  EXPECT_EQ(ChatTemplate::named("llama2", llama_ctx()).special_markers(),
            (std::vector<std::string>{"<s>", "</s>"}));
  EXPECT_EQ(ChatTemplate::named("zephyr", llama_ctx()).special_markers(), (std::vector<std::string>{"</s>"}));
  EXPECT_TRUE(ChatTemplate::named("none", llama_ctx()).special_markers().empty());
  // A tokenizer that knows only the ChatML markers (as one token each): everything else is split.
  auto count = [](std::string_view m) -> size_t {
    return m == "<|im_start|>" || m == "<|im_end|>" ? 1 : m.size();
  };
  EXPECT_NO_THROW(ChatTemplate::named("chatml", qwen_ctx()).check_markers(count, "qwen2.5"));
  auto msg = error_of([&] { ChatTemplate::named("llama3", l3).check_markers(count, "qwen2.5"); });
  EXPECT_TRUE(contains(msg, "chat template 'llama3' marks turns with <|begin_of_text|>")) << msg;
  EXPECT_TRUE(contains(msg, "tokenizer qwen2.5 encodes it as 17 tokens")) << msg;
  EXPECT_TRUE(contains(msg, "--template auto")) << msg;
  EXPECT_TRUE(contains(msg, "--allow-split-markers")) << msg;
  msg = error_of([&] { ChatTemplate::named("qwen3", qwen_ctx()).check_markers(count, "qwen2.5"); });
  EXPECT_TRUE(contains(msg, "marks turns with <think>")) << msg;
}

// Tools, tool calls and tool messages only where the template renders them (qwen2.5, llama3).
TEST(ChatTemplate, ToolsOnlyWhereSupported) {
  Message call{"assistant", "", ""};
  call.tool_calls.push_back({"get_weather", R"({"city": "Paris"})"});
  Conversation c = conv({user("weather?"), call, {"tool", "{\"t\": 21}", ""}, assistant("21 C")});
  c.tools.push_back(R"({"type": "function", "function": {"name": "get_weather", "parameters": {}}})");
  for (const std::string n : {"chatml", "qwen3", "llama3.0", "zephyr", "none"}) {
    auto t = ChatTemplate::named(n, llama_ctx());
    EXPECT_FALSE(t.supports_tools()) << n;
    auto msg = error_of([&] { t.render(c); });
    EXPECT_TRUE(contains(msg, "no tool calling")) << n << ": " << msg;
    EXPECT_TRUE(contains(msg, "qwen2.5 or llama3")) << n << ": " << msg;
  }
  auto q = ChatTemplate::named("qwen2.5", qwen_ctx());
  auto r = q.render(c);
  EXPECT_TRUE(contains(r.text,
                       "<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
                       "\"parameters\": {}}}\n</tools>"))
      << r.text;
  EXPECT_EQ(span_texts(r),
            (std::vector<std::string>{"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                                      "\"Paris\"}}\n</tool_call><|im_end|>",
                                      "21 C<|im_end|>"}));
  auto l = ChatTemplate::named("llama3", {"<|begin_of_text|>", "<|eot_id|>", "", ""});
  r = l.render(c);
  EXPECT_TRUE(
      contains(r.text, "<|start_header_id|>ipython<|end_header_id|>\n\n\"{\\\"t\\\": 21}\"<|eot_id|>"))
      << r.text;
  Message two = call;
  two.tool_calls.push_back(call.tool_calls[0]);
  auto msg = error_of([&] { l.render(conv({user("q"), two})); });
  EXPECT_TRUE(contains(msg, "one per message")) << msg;
}

TEST(ChatTemplate, Qwen3ReasoningRules) {
  auto t = ChatTemplate::named("qwen3", qwen_ctx());
  // Earlier turn's reasoning is dropped, the last turn keeps it; content <think> blocks are split off.
  auto r = t.render(
      conv({user("q1"), assistant("<think>\nr1\n</think>\n\na1"), user("q2"), assistant("a2", "\nr2\n")}));
  EXPECT_EQ(r.text,
            "<|im_start|>user\nq1<|im_end|>\n<|im_start|>assistant\na1<|im_end|>\n"
            "<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\n<think>\nr2\n</think>\n\na2<|im_end|>\n");
  EXPECT_EQ(span_texts(r),
            (std::vector<std::string>{"a1<|im_end|>", "<think>\nr2\n</think>\n\na2<|im_end|>"}));
  // The last turn gets an empty block without reasoning; enable_thinking=false adds one to the prompt.
  r = t.render(conv({user("q"), assistant("a")}));
  EXPECT_EQ(span_texts(r), (std::vector<std::string>{"<think>\n\n</think>\n\na<|im_end|>"}));
  RenderOptions o;
  o.add_generation_prompt = true;
  o.enable_thinking = false;
  r = t.render(conv({user("q")}), o);
  EXPECT_EQ(r.text, "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  EXPECT_TRUE(r.assistant_spans.empty());
}

TEST(ChatTemplate, Llama3TrimsLikePythonAndUsesDate) {
  TemplateContext ctx{"<|begin_of_text|>", "<|eot_id|>", "", ""};
  auto t = ChatTemplate::named("llama3", ctx);
  // U+3000 and U+00A0 are Python whitespace (str.strip removes them); U+200B is not.
  auto r = t.render(conv({user("\xE3\x80\x80 hi \xC2\xA0"), assistant("\xE2\x80\x8B"
                                                                      "a\n")}));
  EXPECT_EQ(
      r.text,
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
      "Today Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n\xE2\x80\x8B"
      "a<|eot_id|>");
  EXPECT_EQ(span_texts(r), (std::vector<std::string>{"\xE2\x80\x8B"
                                                     "a<|eot_id|>"}));
  ctx.date_string = "01 Jan 2030";
  r = ChatTemplate::named("llama3", ctx).render(conv({user("x")}));
  EXPECT_TRUE(contains(r.text, "Today Date: 01 Jan 2030\n\n")) << r.text;
  // A template that calls strftime_now (Llama 3.2) gets today's date, formatted "%d %b %Y".
  ctx.date_string = "";
  ctx.jinja =
      "{{- bos_token }}<|start_header_id|>{%- set date_string = strftime_now(\"%d %b %Y\") %} Cutting "
      "Knowledge Date";
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%d %b %Y", &tm);
  r = ChatTemplate::named("auto", ctx).render(conv({user("x")}));
  EXPECT_TRUE(contains(r.text, std::string("Today Date: ") + buf + "\n\n")) << r.text;
}

TEST(ChatTemplate, Llama2EmptySystemStillPrintsSysBlock) {
  // Jinja's `system_message != false` is true for "" too; strip() trims only the joined text's ends.
  auto t = ChatTemplate::named("llama2", llama_ctx());
  auto r = t.render(conv({sys_msg(""), user(" hi "), assistant("  yo\n")}));
  EXPECT_EQ(r.text, "<s>[INST] <<SYS>>\n\n<</SYS>>\n\n hi [/INST] yo </s>");  // only the ends stripped
  EXPECT_EQ(span_texts(r), (std::vector<std::string>{" yo </s>"}));
  // A system message alone renders nothing (no exchange to attach it to), like HF.
  EXPECT_EQ(t.render(conv({sys_msg("s")})).text, "");
}

TEST(ChatTemplate, ZephyrAndMistralShapes) {
  auto z = ChatTemplate::named("zephyr", llama_ctx())
               .render(conv({sys_msg("s"), user("u"), assistant("a")}), true);
  EXPECT_EQ(z.text, "<|system|>\ns</s>\n<|user|>\nu</s>\n<|assistant|>\na</s>\n<|assistant|>\n");
  EXPECT_EQ(span_texts(z), (std::vector<std::string>{"a</s>"}));
  auto m =
      ChatTemplate::named("mistral", llama_ctx()).render(conv({user("u"), assistant("a"), user("v")}), true);
  EXPECT_EQ(m.text, "<s>[INST] u [/INST]a</s>[INST] v [/INST]");
  EXPECT_EQ(span_texts(m), (std::vector<std::string>{"a</s>"}));
}

TEST(ChatTemplate, AlpacaMapping) {
  auto t = ChatTemplate::named("alpaca", llama_ctx());
  auto r = t.render(t.alpaca_row("Add.", "2 and 3", "5"));
  EXPECT_EQ(
      r.text,
      "Below is an instruction that describes a task, paired with an input that provides further context. "
      "Write a response that appropriately completes the request.\n\n### Instruction:\nAdd.\n\n"
      "### Input:\n2 and 3\n\n### Response:\n5</s>");
  EXPECT_EQ(span_texts(r), (std::vector<std::string>{"5</s>"}));
  r = t.render(t.alpaca_row("Say hi.", "", "hi"));
  EXPECT_EQ(
      r.text,
      "Below is an instruction that describes a task. Write a response that appropriately completes the "
      "request.\n\n### Instruction:\nSay hi.\n\n### Response:\nhi</s>");
  r = t.render(conv({sys_msg("Be terse."), user("Say hi.")}), true);
  EXPECT_EQ(r.text, "Be terse.\n\n### Instruction:\nSay hi.\n\n### Response:\n");
  EXPECT_TRUE(r.assistant_spans.empty());
  auto msg = error_of([&] { t.render(conv({user("a"), assistant("b"), user("c")})); });
  EXPECT_TRUE(contains(msg, "message 2 ('user') follows")) << msg;
  msg = error_of([&] { t.render(conv({assistant("b")})); });
  EXPECT_TRUE(contains(msg, "message 0 is 'assistant'")) << msg;
  // Other families get the input joined to the instruction; `input` is alpaca's own role.
  auto chatml = ChatTemplate::named("chatml", qwen_ctx());
  auto c = chatml.alpaca_row("Add.", "2 and 3", "5");
  ASSERT_EQ(c.messages.size(), 2u);
  EXPECT_EQ(c.messages[0].content, "Add.\n\n2 and 3");
  msg = error_of([&] { chatml.render(t.alpaca_row("Add.", "2 and 3", "5")); });
  EXPECT_TRUE(contains(msg, "role 'input'")) << msg;
}

TEST(ChatTemplate, NoneConcatenatesAndTrainsAll) {
  auto t = ChatTemplate::named("none", llama_ctx());
  auto r = t.render(conv({user("Hello "), assistant("world")}), true);
  EXPECT_EQ(r.text, "Hello world");
  ASSERT_EQ(r.assistant_spans.size(), 1u);
  EXPECT_EQ(r.assistant_spans[0], (std::vector<std::pair<size_t, size_t>>{{0, 11}}));
  EXPECT_TRUE(t.render(conv({user("")})).assistant_spans.empty());
}

TEST(ChatTemplate, CustomTemplate) {
  CustomTemplate spec;
  spec.bos = "{bos}";
  spec.role_affixes["system"] = {"", "\n\n"};
  spec.role_affixes["user"] = {"### User: ", "\n"};
  spec.role_affixes["assistant"] = {"### Bot: ", "{eos}\n"};
  auto t = ChatTemplate::custom(spec, llama_ctx());
  EXPECT_EQ(t.name(), "custom");
  auto r = t.render(conv({sys_msg("S"), user("u"), assistant("a"), user("v")}), true);
  EXPECT_EQ(r.text, "<s>S\n\n### User: u\n### Bot: a</s>\n### User: v\n### Bot: ");
  EXPECT_EQ(span_texts(r), (std::vector<std::string>{"a</s>\n"}));
  spec.generation_prompt = "### Bot:";
  EXPECT_EQ(ChatTemplate::custom(spec, llama_ctx()).render(conv({user("v")}), true).text,
            "<s>### User: v\n### Bot:");
  auto msg = error_of([&] { t.render(conv({{"tool", "x", ""}})); });
  EXPECT_TRUE(contains(msg, "role 'tool'")) << msg;
  EXPECT_TRUE(contains(msg, "assistant, system, user")) << msg;
  CustomTemplate only_user;
  only_user.role_affixes["user"] = {"U:", "\n"};
  auto u = ChatTemplate::custom(only_user, llama_ctx());
  msg = error_of([&] { u.render(conv({user("x")}), true); });
  EXPECT_TRUE(contains(msg, "generation prompt")) << msg;
  EXPECT_TRUE(contains(error_of([] { ChatTemplate::custom(CustomTemplate{}, llama_ctx()); }), "no role"));
}

TEST(ChatTemplate, AutoRecognizesRealTemplates) {
  HS_REQUIRE_TESTDATA();
  struct Case {
    std::string file, family;
  };
  for (const auto& c : std::vector<Case>{{"chat_templates/Qwen-Qwen3-0.6B.jinja", "qwen3"},
                                         {"chat_templates/Qwen-Qwen2.5-7B-Instruct.jinja", "qwen2.5"},
                                         {"chat_templates/meta-llama-Llama-3.1-8B-Instruct.jinja", "llama3"},
                                         {"tokenizers/tinyllama/chat_template.jinja", "zephyr"}}) {
    TemplateContext ctx = llama_ctx();
    ctx.jinja = read_testdata(c.file);
    EXPECT_EQ(ChatTemplate::named("auto", ctx).name(), c.family) << c.file;
  }
}

TEST(ChatTemplate, AutoOnInlineTemplatesAndFailures) {
  TemplateContext ctx = llama_ctx();
  ctx.jinja =
      "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == "
      "0) %}"
      "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif "
      "%}"
      "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif "
      "message['role'] "
      "== 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and "
      "assistant "
      "roles are supported!') }}{% endif %}{% endfor %}";
  EXPECT_EQ(ChatTemplate::named("auto", ctx).name(), "mistral");
  ctx.jinja =
      "{% set content = '<<SYS>>\\n' + system_message %}{{ bos_token + '[INST] ' + content.strip() }}";
  EXPECT_EQ(ChatTemplate::named("auto", ctx).name(), "llama2");

  ctx.jinja = "";
  auto msg = error_of([&] { ChatTemplate::named("auto", ctx); });
  EXPECT_TRUE(contains(msg, "no chat template")) << msg;
  EXPECT_TRUE(contains(msg, "--template")) << msg;
  ctx.jinja = "{% for m in messages %}<start_of_turn>{{ m.role }}{% endfor %}";
  msg = error_of([&] { ChatTemplate::named("auto", ctx); });
  EXPECT_TRUE(contains(msg, "<start_of_turn>")) << msg;  // names what it saw
  EXPECT_TRUE(contains(msg, "--template")) << msg;
  ctx.jinja =
      "{% for m in messages %}{{'<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n'}}{% endfor %}";
  msg = error_of([&] { ChatTemplate::named("auto", ctx); });
  EXPECT_TRUE(contains(msg, "neither the classic ChatML template")) << msg;
  EXPECT_FALSE(contains(msg, "custom template")) << msg;  // no option that does not exist
  ctx.jinja =
      "{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>' }}{% endfor %}";
  msg = error_of([&] { ChatTemplate::named("auto", ctx); });
  EXPECT_TRUE(contains(msg, "--template llama3.0")) << msg;
  // Meta-Llama-3-8B-Instruct's template (tokenizer_config.json) and the classic ChatML one.
  ctx.jinja =
      "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
      "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
      "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
      "{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
      "{% endif %}";
  EXPECT_EQ(ChatTemplate::named("auto", ctx).name(), "llama3.0");
  ctx.jinja =
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
      "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% "
      "endif %}";
  EXPECT_EQ(ChatTemplate::named("auto", ctx).name(), "chatml");
  ctx.jinja = "{{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}";  // Mistral v0.3 style
  msg = error_of([&] { ChatTemplate::named("auto", ctx); });
  EXPECT_TRUE(contains(msg, "Mistral v0.1")) << msg;
}
