// Chat template renderers. Each family is one function that walks the messages the way its HF Jinja
// template does, appending to an Out that records, for every assistant message, the byte range from the
// end of its role header through its end-of-turn marker. Validation (roles, alternation, reasoning, tools)
// runs before rendering so a bad conversation never yields half a text. The Jinja string is only read by
// `auto` (marker detection) and by llama3 (whether the template asks for today's date); no Jinja engine.
// Tool schemas and call arguments are JSON texts, printed through a copy of transformers' `tojson` filter
// (Python json.dumps, ensure_ascii=False, key order kept).
#include "tokenizer/chat_template.h"

#include <cstdio>
#include <ctime>
#include <functional>
#include <set>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/log.h"
#include "io/json.h"

namespace hs::tokenizer {
namespace {

using Span = std::pair<size_t, size_t>;
using std::string;
using std::string_view;

constexpr string_view kQwenDefaultSystem =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
constexpr string_view kLlama3DefaultDate = "26 Jul 2024";
// Templates `auto` recognizes by their whole text (compared by normalized_template()).
constexpr string_view kClassicChatml =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% endif %}";
constexpr string_view kLlama30 =  // meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}";
constexpr string_view kAlpacaPreambleInput =
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.";
constexpr string_view kAlpacaPreambleNoInput =
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.";

const std::vector<string>& family_names() {
  static const std::vector<string> names = {"chatml", "qwen2.5", "qwen3",  "llama3", "llama3.0",
                                            "llama2", "mistral", "zephyr", "alpaca", "none"};
  return names;
}

string join(const std::vector<string>& items, string_view sep) {
  string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? string(sep) : string()) + items[i];
  return out;
}

// ---- Python string semantics the templates rely on -------------------------------------------------

// Decodes the UTF-8 code point at s[i]; returns its length, or 0 (and cp = -1) when invalid.
size_t decode_utf8(string_view s, size_t i, int32_t& cp) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  cp = -1;
  unsigned char c = b(i);
  size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || i + len > s.size()) return 0;
  int32_t v = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    v = (v << 6) | (b(i + k) & 0x3F);
  }
  cp = v;
  return len;
}

// Python str.isspace() (what str.strip() and Jinja's trim remove).
bool py_isspace(int32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// Python str.strip() with no argument, on UTF-8 (invalid bytes count as non-space).
string_view py_strip(string_view s) {
  size_t b = 0;
  while (b < s.size()) {
    int32_t cp;
    size_t len = decode_utf8(s, b, cp);
    if (len == 0 || !py_isspace(cp)) break;
    b += len;
  }
  size_t e = s.size();
  while (e > b) {
    size_t start = e - 1;  // step back to the lead byte of the last code point (at most 3 continuations)
    while (start > b && e - start < 4 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    int32_t cp;
    size_t len = decode_utf8(s, start, cp);
    if (len != e - start || !py_isspace(cp)) break;
    e = start;
  }
  return s.substr(b, e - b);
}

string_view lstrip_char(string_view s, char c) {
  while (!s.empty() && s.front() == c) s.remove_prefix(1);
  return s;
}
string_view rstrip_char(string_view s, char c) {
  while (!s.empty() && s.back() == c) s.remove_suffix(1);
  return s;
}
string_view strip_char(string_view s, char c) { return rstrip_char(lstrip_char(s, c), c); }
// s.split(sep)[0] and s.split(sep)[-1].
string_view before_first(string_view s, string_view sep) {
  size_t p = s.find(sep);
  return p == string_view::npos ? s : s.substr(0, p);
}
string_view after_last(string_view s, string_view sep) {
  size_t p = s.rfind(sep);
  return p == string_view::npos ? s : s.substr(p + sep.size());
}

string replace_all(string s, string_view from, string_view to) {
  for (size_t p = s.find(from); p != string::npos; p = s.find(from, p + to.size()))
    s.replace(p, from.size(), to);
  return s;
}

// ---- output with trainable spans ---------------------------------------------------------------------

struct Out {
  Rendered r;
  template <typename... Parts>
  void put(const Parts&... parts) {
    (r.text.append(string_view(parts)), ...);
  }
  size_t mark() const { return r.text.size(); }
  void turn(size_t begin) { r.assistant_spans.push_back({Span{begin, r.text.size()}}); }
};

// ---- validation ------------------------------------------------------------------------------------------

Error template_error(const string& family, const string& what) {
  return Error(str("chat template '", family, "': ", what));
}

void check_not_empty(const string& family, const Conversation& c) {
  if (c.messages.empty())
    throw template_error(family, "the conversation has no messages")
        .hint("every sample needs at least one message; drop empty conversations before rendering");
}

// Every role must be in `allowed`; reasoning only where `reasoning_ok` (qwen3 assistant turns).
void check_roles(const string& family, const Conversation& c, const std::set<string>& allowed,
                 bool reasoning_ok = false) {
  for (size_t i = 0; i < c.messages.size(); ++i) {
    const Message& m = c.messages[i];
    if (!allowed.count(m.role)) {
      std::vector<string> names(allowed.begin(), allowed.end());
      Error e = template_error(
          family, str("message ", i, " has role '", m.role, "'; this template takes ", join(names, ", ")));
      if (m.role == "tool" || m.role == "ipython" || m.role == "function")
        e.hint(str("the '", family,
                   "' template has no tool messages; use --template qwen2.5 or llama3 (Llama 3.1), ",
                   "which render tools as transformers does, or drop the tool turns"));
      else if (m.role == "input")
        e.hint("the `input` role belongs to the alpaca template; for others join it to the user message");
      else if (m.role == "system")
        e.hint("this template has no system role: merge the system text into the first user message");
      else
        e.hint("map the data's roles to system/user/assistant (ShareGPT: human -> user, gpt -> assistant)");
      throw e;
    }
    if (!m.reasoning.empty() && !(reasoning_ok && m.role == "assistant"))
      throw template_error(family, str("message ", i, " (", m.role,
                                       ") has reasoning, which this template "
                                       "would drop"))
          .hint(reasoning_ok
                    ? "reasoning belongs to assistant messages"
                    : "use --template qwen3 for reasoning data, or put the reasoning into the content");
  }
}

// user/assistant/user/... from the first message of `from` on (Jinja: (role == 'user') != (index0 % 2 == 0)).
void check_alternation(const string& family, const Conversation& c, size_t from) {
  for (size_t i = from; i < c.messages.size(); ++i) {
    const string& role = c.messages[i].role;
    const bool want_user = (i - from) % 2 == 0;
    if ((role == "user") != want_user || (role != "user" && role != "assistant"))
      throw template_error(
          family, str("roles must alternate user/assistant/user/assistant/... but message ", i, " is '", role,
                      "' where '", want_user ? "user" : "assistant", "' is expected"))
          .hint(str("merge consecutive messages of one role and start with a user message",
                    family == "mistral" ? "; this template has no system role" : "",
                    "; or pick a template without this rule (chatml, qwen3, llama3, zephyr)"));
  }
}

const std::set<string> kChatRoles = {"system", "user", "assistant"};
const std::set<string> kToolRoles = {"system", "user", "assistant", "tool"};

// Tools, tool calls and tool messages only where the family renders them.
void check_tools(const string& family, const Conversation& c, bool supported) {
  if (supported) return;
  const auto refuse = [&](const string& what) {
    return template_error(family, what + ", but this template has no tool calling")
        .hint(
            "use --template qwen2.5 or llama3 (Llama 3.1), which render tools as transformers does, or drop "
            "the tool parts of the data");
  };
  if (!c.tools.empty())
    throw refuse(str("the conversation comes with ", c.tools.size(), " tool definitions"));
  for (size_t i = 0; i < c.messages.size(); ++i)
    if (!c.messages[i].tool_calls.empty()) throw refuse(str("message ", i, " makes a tool call"));
}

// ---- transformers' tojson: json.dumps(x, ensure_ascii=False, indent=indent) -----------------------------

using OJson = nlohmann::ordered_json;

void py_json_string(const string& s, string& out) {
  out += '"';
  for (unsigned char ch : s) {
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (ch < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(ch));
          out += buf;
        } else {
          out += char(ch);
        }
    }
  }
  out += '"';
}

void py_json(const OJson& j, int indent, int level, string& out) {
  const auto newline = [&](int lvl) {
    out += '\n';
    out.append(size_t(indent * lvl), ' ');
  };
  if (j.is_object() || j.is_array()) {
    const bool obj = j.is_object();
    if (j.empty()) {
      out += obj ? "{}" : "[]";
      return;
    }
    out += obj ? '{' : '[';
    bool first = true;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!first) out += indent > 0 ? "," : ", ";
      first = false;
      if (indent > 0) newline(level + 1);
      if (obj) {
        py_json_string(it.key(), out);
        out += ": ";
      }
      py_json(*it, indent, level + 1, out);
    }
    if (indent > 0) newline(level);
    out += obj ? '}' : ']';
  } else if (j.is_string()) {
    py_json_string(j.get_ref<const string&>(), out);
  } else if (j.is_boolean()) {
    out += j.get<bool>() ? "true" : "false";
  } else if (j.is_null()) {
    out += "null";
  } else {
    out += j.dump();  // numbers: integers exact; floats in the shortest round-trip form, as Python's repr
  }
}

// tojson of a JSON text (a tool schema or call arguments) as transformers' chat templates print it.
string tojson(const string& json_text, int indent = 0) {
  OJson j = OJson::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    throw Error(str("tool JSON is not valid JSON (",
                    io::describe_json_failure(json_text, io::diagnose_json(json_text)),
                    "): ", json_text.substr(0, 80)))
        .hint("tool definitions and call arguments must be JSON values");
  string out;
  py_json(j, indent, 0, out);
  return out;
}
const std::set<string> kMistralRoles = {"user", "assistant"};
const std::set<string> kAlpacaRoles = {"system", "user", "input", "assistant"};

// ---- families ------------------------------------------------------------------------------------------

struct Family {
  string name;
  TemplateContext ctx;
  string date;            // llama3
  CustomTemplate custom;  // custom, fields already expanded
  std::set<string> custom_roles;
};

using RenderFn = std::function<void(const Family&, const Conversation&, const RenderOptions&, Out&)>;

// The classic ChatML template: every message as <|im_start|>role\ncontent<|im_end|>\n, nothing added.
void render_chatml(const Family& f, const Conversation& c, const RenderOptions& o, Out& out) {
  check_roles(f.name, c, kChatRoles);
  for (const Message& m : c.messages) {
    out.put("<|im_start|>", m.role, "\n");
    size_t b = out.mark();
    out.put(m.content);
    out.put("<|im_end|>");
    if (m.role == "assistant") out.turn(b);
    out.put("\n");
  }
  if (o.add_generation_prompt) out.put("<|im_start|>assistant\n");
}

// Qwen2/2.5 (tokenizers/qwen2.5 tokenizer_config.json, chat_templates/Qwen-Qwen2.5-7B-Instruct.jinja).
void render_qwen25(const Family& f, const Conversation& c, const RenderOptions& o, Out& out) {
  check_roles(f.name, c, kToolRoles);
  const auto& ms = c.messages;
  const bool system_first = ms[0].role == "system";
  out.put("<|im_start|>system\n");
  out.put(system_first ? string_view(ms[0].content) : kQwenDefaultSystem);
  if (!c.tools.empty()) {
    out.put(
        "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are "
        "provided with function signatures within <tools></tools> XML tags:\n<tools>");
    for (const string& t : c.tools) out.put("\n", tojson(t));
    out.put(
        "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
        "<args-json-object>}\n</tool_call>");
  }
  out.put("<|im_end|>\n");
  for (size_t i = 0; i < ms.size(); ++i) {
    const Message& m = ms[i];
    if (m.role == "system" && i == 0) continue;
    if (m.role == "tool") {
      if (i == 0 || ms[i - 1].role != "tool") out.put("<|im_start|>user");
      out.put("\n<tool_response>\n", m.content, "\n</tool_response>");
      if (i + 1 == ms.size() || ms[i + 1].role != "tool") out.put("<|im_end|>\n");
    } else if (m.role == "assistant" && !m.tool_calls.empty()) {
      out.put("<|im_start|>assistant\n");  // the template prints '\n' before the content or first call
      size_t b = out.mark();
      out.put(m.content);
      for (size_t k = 0; k < m.tool_calls.size(); ++k) {
        if (k > 0 || !m.content.empty()) out.put("\n");
        out.put("<tool_call>\n{\"name\": \"", m.tool_calls[k].name,
                "\", \"arguments\": ", tojson(m.tool_calls[k].arguments), "}\n</tool_call>");
      }
      out.put("<|im_end|>");
      out.turn(b);
      out.put("\n");
    } else {
      out.put("<|im_start|>", m.role, "\n");
      size_t b = out.mark();
      out.put(m.content);
      out.put("<|im_end|>");
      if (m.role == "assistant") out.turn(b);
      out.put("\n");
    }
  }
  if (o.add_generation_prompt) out.put("<|im_start|>assistant\n");
}

// Qwen3 (tokenizers/qwen3 tokenizer_config.json, chat_templates/Qwen-Qwen3-0.6B.jinja), tools excluded.
void render_qwen3(const Family& f, const Conversation& c, const RenderOptions& o, Out& out) {
  check_roles(f.name, c, kChatRoles, /*reasoning_ok=*/true);
  const auto& ms = c.messages;
  if (ms[0].role == "system") out.put("<|im_start|>system\n", ms[0].content, "<|im_end|>\n");
  // The last user message that is not a wrapped tool response; turns after it keep their reasoning.
  size_t last_query = ms.size() - 1;
  for (size_t k = ms.size(); k-- > 0;) {
    string_view t = ms[k].content;
    if (ms[k].role == "user" && !(t.starts_with("<tool_response>") && t.ends_with("</tool_response>"))) {
      last_query = k;
      break;
    }
  }
  for (size_t i = 0; i < ms.size(); ++i) {
    const Message& m = ms[i];
    if (m.role == "user" || (m.role == "system" && i > 0)) {
      out.put("<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n");
    } else if (m.role == "assistant") {
      string_view content = m.content;
      string_view reasoning;
      if (!m.reasoning.empty()) {
        reasoning = m.reasoning;
      } else if (content.find("</think>") != string_view::npos) {
        reasoning =
            lstrip_char(after_last(rstrip_char(before_first(content, "</think>"), '\n'), "<think>"), '\n');
        content = lstrip_char(after_last(content, "</think>"), '\n');
      }
      out.put("<|im_start|>assistant\n");
      size_t b = out.mark();
      const bool last = i + 1 == ms.size();
      if (i > last_query && (last || !reasoning.empty()))
        out.put("<think>\n", strip_char(reasoning, '\n'), "\n</think>\n\n", lstrip_char(content, '\n'));
      else
        out.put(content);
      out.put("<|im_end|>");
      out.turn(b);
      out.put("\n");
    }
  }
  if (o.add_generation_prompt) {
    out.put("<|im_start|>assistant\n");
    if (!o.enable_thinking) out.put("<think>\n\n</think>\n\n");
  }
}

// Llama 3.1 (chat_templates/meta-llama-Llama-3.1-8B-Instruct.jinja) with tools in the first user message
// (its default); builtin_tools (ipython / <|python_tag|>) are not rendered.
void render_llama3(const Family& f, const Conversation& c, const RenderOptions& o, Out& out) {
  check_roles(f.name, c, kToolRoles);
  const auto& ms = c.messages;
  size_t first = 0;
  string_view system;
  if (ms[0].role == "system") {
    system = py_strip(ms[0].content);
    first = 1;
  }
  const bool tools = !c.tools.empty();
  for (size_t i = first; i < ms.size(); ++i) {
    const Message& m = ms[i];
    if (m.tool_calls.size() > 1)
      throw template_error(f.name, str("message ", i, " makes ", m.tool_calls.size(),
                                       " tool calls; Llama 3.1 takes one per message"))
          .hint("split the calls into one assistant message each (HF's template raises the same error)");
    if (!m.tool_calls.empty() && !m.content.empty())
      throw template_error(f.name, str("message ", i,
                                       " has content next to its tool call, which this "
                                       "template would drop"))
          .hint("put the text into its own assistant message, or use --template qwen2.5");
  }
  if (tools && (first >= ms.size() || ms[first].role != "user"))
    throw template_error(f.name,
                         "with tools, the first message after the system message must be a user "
                         "message (the template puts the tool list into it)")
        .hint("start the conversation with the user's request");
  out.put(f.ctx.bos_text);
  out.put("<|start_header_id|>system<|end_header_id|>\n\n");
  if (tools) out.put("Environment: ipython\n");
  out.put("Cutting Knowledge Date: December 2023\n");
  out.put("Today Date: ", f.date, "\n\n");
  out.put(system);
  out.put("<|eot_id|>");
  if (tools) {
    out.put("<|start_header_id|>user<|end_header_id|>\n\n");
    out.put(
        "Given the following functions, please respond with a JSON for a function call with its proper "
        "arguments that best answers the given prompt.\n\n");
    out.put(
        "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and "
        "its value}.Do not use variables.\n\n");
    for (const string& t : c.tools) out.put(tojson(t, 4), "\n\n");
    out.put(py_strip(ms[first].content), "<|eot_id|>");
    ++first;
  }
  for (size_t i = first; i < ms.size(); ++i) {
    const Message& m = ms[i];
    if (m.role == "tool") {
      out.put("<|start_header_id|>ipython<|end_header_id|>\n\n");
      string quoted;
      py_json_string(m.content, quoted);  // a string is `iterable` in Jinja: the template prints tojson
      out.put(quoted, "<|eot_id|>");
      continue;
    }
    out.put("<|start_header_id|>", m.role, "<|end_header_id|>\n\n");
    size_t b = out.mark();
    if (!m.tool_calls.empty())
      out.put("{\"name\": \"", m.tool_calls[0].name,
              "\", \"parameters\": ", tojson(m.tool_calls[0].arguments), "}");
    else
      out.put(py_strip(m.content));
    out.put("<|eot_id|>");
    if (m.role == "assistant") out.turn(b);
  }
  if (o.add_generation_prompt) out.put("<|start_header_id|>assistant<|end_header_id|>\n\n");
}

// Meta-Llama-3-8B-Instruct (the 3.0 template): BOS + one header block per message, nothing else.
void render_llama30(const Family& f, const Conversation& c, const RenderOptions& o, Out& out) {
  check_roles(f.name, c, kChatRoles);
  out.put(f.ctx.bos_text);
  for (const Message& m : c.messages) {
    out.put("<|start_header_id|>", m.role, "<|end_header_id|>\n\n");
    size_t b = out.mark();
    out.put(py_strip(m.content));
    out.put("<|eot_id|>");
    if (m.role == "assistant") out.turn(b);
  }
  if (o.add_generation_prompt) out.put("<|start_header_id|>assistant<|end_header_id|>\n\n");
}

// Llama-2-chat (meta-llama/Llama-2-7b-chat-hf tokenizer_config.json). The generation prompt adds nothing.
void render_llama2(const Family& f, const Conversation& c, const RenderOptions&, Out& out) {
  check_roles(f.name, c, kChatRoles);
  const auto& ms = c.messages;
  const bool has_system = ms[0].role == "system";
  const size_t first = has_system ? 1 : 0;
  for (size_t i = first; i < ms.size(); ++i)
    if (ms[i].role == "system")
      throw template_error(f.name, str("message ", i,
                                       " is a system message; this template takes one only as "
                                       "the first message"))
          .hint("merge system messages into the first one (HF's Llama-2 template would drop or reject it)");
  check_alternation(f.name, c, first);
  for (size_t i = first; i < ms.size(); ++i) {
    const Message& m = ms[i];
    // Jinja: system_message != false holds for an empty system string too.
    string content = m.content;
    if (i == first && has_system) content = "<<SYS>>\n" + ms[0].content + "\n<</SYS>>\n\n" + m.content;
    if (m.role == "user") {
      out.put(f.ctx.bos_text, "[INST] ", py_strip(content), " [/INST]");
    } else {
      size_t b = out.mark();
      out.put(" ", py_strip(content), " ", f.ctx.eos_text);
      out.turn(b);
    }
  }
}

// Mistral-7B-Instruct-v0.1. The generation prompt adds nothing.
void render_mistral(const Family& f, const Conversation& c, const RenderOptions&, Out& out) {
  check_roles(f.name, c, kMistralRoles);
  check_alternation(f.name, c, 0);
  out.put(f.ctx.bos_text);
  for (const Message& m : c.messages) {
    if (m.role == "user") {
      out.put("[INST] ", m.content, " [/INST]");
    } else {
      size_t b = out.mark();
      out.put(m.content);
      out.put(f.ctx.eos_text);
      out.turn(b);
    }
  }
}

// TinyLlama-1.1B-Chat / Zephyr (tokenizers/tinyllama/chat_template.jinja, rendered with trim_blocks).
void render_zephyr(const Family& f, const Conversation& c, const RenderOptions& o, Out& out) {
  check_roles(f.name, c, kChatRoles);
  for (const Message& m : c.messages) {
    out.put("<|", m.role, "|>\n");
    size_t b = out.mark();
    out.put(m.content);
    out.put(f.ctx.eos_text);
    if (m.role == "assistant") out.turn(b);
    out.put("\n");
  }
  if (o.add_generation_prompt) out.put("<|assistant|>\n");
}

void render_alpaca(const Family& f, const Conversation& c, const RenderOptions&, Out& out) {
  check_roles(f.name, c, kAlpacaRoles);
  const auto& ms = c.messages;
  size_t i = 0;
  const Message* system = nullptr;
  const Message* input = nullptr;
  const Message* output = nullptr;
  if (i < ms.size() && ms[i].role == "system") system = &ms[i++];
  if (i >= ms.size() || ms[i].role != "user")
    throw template_error(f.name, str("expected messages [system] user [input] [assistant], but message ", i,
                                     i < ms.size() ? str(" is '", ms[i].role, "'") : string(" is missing"),
                                     " where the user instruction belongs"))
        .hint("an Alpaca sample is one instruction (user), an optional input and one response (assistant)");
  const Message& instruction = ms[i++];
  if (i < ms.size() && ms[i].role == "input") input = &ms[i++];
  if (i < ms.size() && ms[i].role == "assistant") output = &ms[i++];
  if (i < ms.size())
    throw template_error(f.name, str("expected messages [system] user [input] [assistant], but message ", i,
                                     " ('", ms[i].role, "') follows"))
        .hint("the alpaca template has exactly one exchange; use a chat template for multi-turn data");
  const bool with_input = input && !input->content.empty();
  if (system)
    out.put(system->content);
  else
    out.put(with_input ? kAlpacaPreambleInput : kAlpacaPreambleNoInput);
  out.put("\n\n### Instruction:\n", instruction.content);
  if (with_input) out.put("\n\n### Input:\n", input->content);
  out.put("\n\n### Response:\n");
  if (output) {
    size_t b = out.mark();
    out.put(output->content);
    out.put(f.ctx.eos_text);
    out.turn(b);
  }
}

void render_none(const Family& f, const Conversation& c, const RenderOptions&, Out& out) {
  check_roles(f.name, c, kChatRoles);
  for (const Message& m : c.messages) out.put(m.content);
  if (!out.r.text.empty()) out.r.assistant_spans.push_back({Span{0, out.r.text.size()}});
}

void render_custom(const Family& f, const Conversation& c, const RenderOptions& o, Out& out) {
  check_roles(f.name, c, f.custom_roles);
  out.put(f.custom.bos);
  for (const Message& m : c.messages) {
    const auto& [prefix, suffix] = f.custom.role_affixes.at(m.role);
    out.put(prefix);
    size_t b = out.mark();
    out.put(m.content);
    out.put(suffix);
    if (m.role == "assistant") out.turn(b);
  }
  if (o.add_generation_prompt) {
    if (!f.custom.generation_prompt.empty()) {
      out.put(f.custom.generation_prompt);
    } else {
      auto it = f.custom.role_affixes.find("assistant");
      if (it == f.custom.role_affixes.end())
        throw template_error(f.name,
                             "a generation prompt was asked for, but the custom template has neither a "
                             "generation prompt nor an assistant prefix")
            .hint("set the custom template's generation prompt or its assistant prefix");
      out.put(it->second.first);
    }
  }
}

RenderFn renderer_for(const string& family) {
  if (family == "chatml") return render_chatml;
  if (family == "qwen2.5") return render_qwen25;
  if (family == "qwen3") return render_qwen3;
  if (family == "llama3") return render_llama3;
  if (family == "llama3.0") return render_llama30;
  if (family == "llama2") return render_llama2;
  if (family == "mistral") return render_mistral;
  if (family == "zephyr") return render_zephyr;
  if (family == "alpaca") return render_alpaca;
  if (family == "none") return render_none;
  return nullptr;
}

// ---- auto: recognize the tokenizer's Jinja ------------------------------------------------------------

string excerpt(const string& jinja) {
  string s = jinja.substr(0, 80);
  for (char& ch : s)
    if (ch == '\n' || ch == '\r' || ch == '\t') ch = ' ';
  return "\"" + s + (jinja.size() > 80 ? "…\"" : "\"");
}

// A template's text for comparison: whitespace outside quoted strings dropped, "\n" escapes inside them
// read as the newline they print (tokenizer_config.json holds either form).
string normalized_template(string_view s) {
  string out;
  char quote = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char ch = s[i];
    if (quote) {
      if (ch == '\\' && i + 1 < s.size() && s[i + 1] == 'n') {
        out += '\n';
        ++i;
        continue;
      }
      if (ch == quote) quote = 0;
    } else if (ch == '\'' || ch == '"') {
      quote = ch;
    } else if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
      continue;
    }
    out += ch;
  }
  return out;
}

string detect_family(const string& jinja) {
  const string names = join(family_names(), ", ");
  const string pass =
      str("pass --template with the family that renders this model's template byte for byte: ", names);
  if (jinja.empty())
    throw Error(
        "chat template 'auto': the tokenizer has no chat template (no chat_template in "
        "tokenizer_config.json)")
        .hint(pass);
  const auto has = [&](string_view s) { return jinja.find(s) != string::npos; };
  const auto unsupported = [&](const string& seen) {
    return Error(str("chat template 'auto': the tokenizer's chat template ", excerpt(jinja), " looks like ",
                     seen, ", which no built-in family reproduces byte for byte"))
        .hint(pass);
  };
  if (has("<|im_start|>")) {
    if (has("<think>")) {
      if (has("last_query_index")) return "qwen3";
      throw unsupported("ChatML with <think> handling other than Qwen3's (no last_query_index rule)");
    }
    if (has(kQwenDefaultSystem)) return "qwen2.5";
    if (normalized_template(jinja) == normalized_template(kClassicChatml)) return "chatml";
    throw unsupported(
        "a ChatML (<|im_start|>) variant that is neither the classic ChatML template (--template chatml) nor "
        "Qwen2.5's (--template qwen2.5, with its default system message)");
  }
  if (has("<|start_header_id|>")) {
    if (has("Cutting Knowledge Date")) return "llama3";
    if (normalized_template(jinja) == normalized_template(kLlama30)) return "llama3.0";
    throw unsupported(
        "a Llama 3-style template (<|start_header_id|>) that is neither Llama 3.1's (with the \"Cutting "
        "Knowledge Date\" system header, --template llama3) nor Meta-Llama-3-8B-Instruct's (--template "
        "llama3.0)");
  }
  if (has("<|user|>")) {
    if (has("eos_token") && !has("<|end|>")) return "zephyr";
    throw unsupported("a <|user|> template that does not end turns with eos_token (e.g. Phi-3's <|end|>)");
  }
  if (has("<<SYS>>")) return "llama2";
  if (has("[INST]")) {
    if ((has("'[INST] '") || has("\"[INST] \"")) && (has("' [/INST]'") || has("\" [/INST]\"")))
      return "mistral";
    throw unsupported("an [INST] template other than Mistral v0.1's ('[INST] ' + content + ' [/INST]')");
  }
  throw Error(str("chat template 'auto': the tokenizer's chat template ", excerpt(jinja),
                  " has none of the markers <|im_start|>, <|start_header_id|>, <|user|>, <<SYS>>, [INST]"))
      .hint(pass);
}

string today_date() {
  std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char buf[32];
  size_t n = std::strftime(buf, sizeof buf, "%d %b %Y", &local);
  return string(buf, n);
}

string llama3_date(const TemplateContext& ctx) {
  if (!ctx.date_string.empty()) return ctx.date_string;
  if (ctx.jinja.find("strftime_now") != string::npos) {
    string today = today_date();
    log::warn("chat template llama3: the tokenizer's template prints today's date (", today,
              ") in every system header; set the date explicitly for reproducible data");
    return today;
  }
  return string(kLlama3DefaultDate);
}

}  // namespace

struct ChatTemplate::Impl {
  Family family;
  RenderFn fn;
};

ChatTemplate::ChatTemplate(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;
ChatTemplate::~ChatTemplate() = default;

std::vector<string> ChatTemplate::families() { return family_names(); }

bool ChatTemplate::supports_tools() const {
  return impl_->family.name == "qwen2.5" || impl_->family.name == "llama3";
}

std::vector<string> ChatTemplate::special_markers() const {
  const string& n = impl_->family.name;
  const TemplateContext& ctx = impl_->family.ctx;
  std::vector<string> m;
  if (n == "chatml" || n == "qwen2.5" || n == "qwen3") m = {"<|im_start|>", "<|im_end|>"};
  if (n == "qwen3") m.insert(m.end(), {"<think>", "</think>"});
  if (n == "llama3" || n == "llama3.0") m = {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
  if (n == "llama3" || n == "llama3.0" || n == "llama2" || n == "mistral")
    if (!ctx.bos_text.empty()) m.insert(m.begin(), ctx.bos_text);
  if (n == "llama2" || n == "mistral" || n == "zephyr" || n == "alpaca")
    if (!ctx.eos_text.empty()) m.push_back(ctx.eos_text);
  return m;
}

void ChatTemplate::check_markers(const std::function<size_t(std::string_view)>& token_count,
                                 const string& tokenizer_name) const {
  for (const string& marker : special_markers()) {
    const size_t n = token_count(marker);
    if (n == 1) continue;
    throw Error(str("chat template '", name(), "' marks turns with ", marker, ", but tokenizer ",
                    tokenizer_name, " encodes it as ", n,
                    " tokens, not one special token: the model would be trained on its "
                    "pieces as text and never see its real turn markers"))
        .hint(str("use the template that matches this tokenizer (--template auto picks it from the "
                  "tokenizer's tokenizer_config.json), or the tokenizer of the model this template belongs "
                  "to; pass --allow-split-markers only if you mean to train the marker as text"));
  }
}

ChatTemplate ChatTemplate::named(const string& name, const TemplateContext& context) {
  string family = name;
  if (name == "auto") {
    family = detect_family(context.jinja);
  } else if (name == "custom") {
    throw Error("chat template 'custom' needs role prefixes and suffixes")
        .hint(
            "give the custom template's role affixes in the config (ChatTemplate::custom), or pick one of: " +
            join(family_names(), ", "));
  } else if (!renderer_for(name)) {
    throw Error(str("unknown chat template '", name, "'"))
        .hint(str("valid names: ", join(family_names(), ", "), ", auto (from the tokenizer), custom"));
  }
  if (context.eos_text.empty() &&
      (family == "llama2" || family == "mistral" || family == "zephyr" || family == "alpaca"))
    throw Error(str("chat template '", family,
                    "' ends every assistant turn with EOS, but the tokenizer has no "
                    "EOS token"))
        .hint(
            "use the model's own tokenizer (tokenizer_config.json eos_token), or a template that matches it");
  auto impl = std::make_unique<Impl>();
  impl->family.name = family;
  impl->family.ctx = context;
  if (family == "llama3") impl->family.date = llama3_date(context);
  impl->fn = renderer_for(family);
  if (name == "auto") log::debug("chat template auto -> ", family);
  return ChatTemplate(std::move(impl));
}

ChatTemplate ChatTemplate::custom(const CustomTemplate& spec, const TemplateContext& context) {
  if (spec.role_affixes.empty())
    throw Error("custom chat template: no role prefixes/suffixes given")
        .hint("give at least the user and assistant affixes, e.g. user = (\"### User:\\n\", \"\\n\")");
  const auto expand = [&](const string& s) {
    return replace_all(replace_all(s, "{bos}", context.bos_text), "{eos}", context.eos_text);
  };
  auto impl = std::make_unique<Impl>();
  impl->family.name = "custom";
  impl->family.ctx = context;
  impl->family.custom.bos = expand(spec.bos);
  impl->family.custom.generation_prompt = expand(spec.generation_prompt);
  for (const auto& [role, affixes] : spec.role_affixes) {
    if (role.empty()) throw Error("custom chat template: a role name is empty").hint("name every role");
    impl->family.custom.role_affixes[role] = {expand(affixes.first), expand(affixes.second)};
    impl->family.custom_roles.insert(role);
  }
  impl->fn = render_custom;
  return ChatTemplate(std::move(impl));
}

Rendered ChatTemplate::render(const Conversation& conversation, bool add_generation_prompt) const {
  RenderOptions options;
  options.add_generation_prompt = add_generation_prompt;
  return render(conversation, options);
}

Rendered ChatTemplate::render(const Conversation& conversation, const RenderOptions& options) const {
  check_not_empty(impl_->family.name, conversation);
  check_tools(impl_->family.name, conversation, supports_tools());
  Out out;
  impl_->fn(impl_->family, conversation, options, out);
  return std::move(out.r);
}

const string& ChatTemplate::name() const { return impl_->family.name; }

Conversation ChatTemplate::alpaca_row(const string& instruction, const string& input,
                                      const string& output) const {
  Conversation c;
  if (impl_->family.name == "alpaca") {
    c.messages.push_back({"user", instruction, ""});
    if (!input.empty()) c.messages.push_back({"input", input, ""});
  } else {
    c.messages.push_back({"user", input.empty() ? instruction : instruction + "\n\n" + input, ""});
  }
  c.messages.push_back({"assistant", output, ""});
  return c;
}

}  // namespace hs::tokenizer
