// Record formats -> Example -> Conversation (see formats.h). Every rejection says which field is wrong.
#include "data_tools/formats.h"

#include "core/error.h"
#include "io/json.h"

namespace hs::data_tools {
using json = Record;

std::string format_name(Format f) {
  switch (f) {
    case Format::alpaca:
      return "alpaca";
    case Format::sharegpt:
      return "sharegpt";
    case Format::messages:
      return "messages";
    case Format::text:
      return "text";
  }
  return "?";
}

std::vector<std::string> format_names() { return {"auto", "alpaca", "sharegpt", "messages", "text"}; }

std::optional<Format> parse_format(const std::string& name) {
  if (name == "auto") return std::nullopt;
  for (Format f : {Format::alpaca, Format::sharegpt, Format::messages, Format::text})
    if (format_name(f) == name) return f;
  throw Error(str("unknown input format '", name, "'"))
      .hint("use one of: auto, alpaca, sharegpt, messages, text");
}

namespace {
const char* type_name(const json& j) { return j.type_name(); }

std::string keys_of(const json& j) {
  std::string out;
  for (auto it = j.begin(); it != j.end(); ++it) out += (out.empty() ? "" : ", ") + it.key();
  return out.empty() ? "(none)" : out;
}

// A string field; `required` false returns "" when absent or null.
std::string get_string(const json& obj, const char* key, bool required, const std::string& ctx = "") {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) throw Error(str(ctx, "'", key, "' is missing"));
    return "";
  }
  if (!it->is_string()) throw Error(str(ctx, "'", key, "' must be a string (got ", type_name(*it), ")"));
  return it->get<std::string>();
}

// content: a string, or a list of {"type": "text", "text" | "value": ...} parts (OpenAI / LLaMA-Factory).
std::string get_content(const json& msg, const char* key, const std::string& ctx) {
  auto it = msg.find(key);
  if (it == msg.end() || it->is_null()) throw Error(str(ctx, "'", key, "' is missing"));
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    std::string out;
    for (size_t i = 0; i < it->size(); ++i) {
      const json& part = (*it)[i];
      if (part.is_string()) {
        out += part.get<std::string>();
        continue;
      }
      if (!part.is_object()) throw Error(str(ctx, key, "[", i, "] must be an object or a string"));
      std::string type = get_string(part, "type", false, str(ctx, key, "[", i, "]."));
      if (!type.empty() && type != "text")
        throw Error(str(ctx, key, "[", i, "] is a '", type, "' part; only text is supported"));
      out += get_string(part, part.contains("text") || !part.contains("value") ? "text" : "value", true,
                        str(ctx, key, "[", i, "]."));
    }
    return out;
  }
  throw Error(str(ctx, "'", key, "' must be a string (got ", type_name(*it), ")"));
}

std::string map_sharegpt_role(const std::string& r, const std::string& ctx) {
  if (r == "human" || r == "user") return "user";
  if (r == "gpt" || r == "assistant" || r == "chatgpt" || r == "bard" || r == "bing" || r == "model")
    return "assistant";
  if (r == "system") return "system";
  if (r == "function_call") return "function_call";
  if (r == "observation") return "tool";
  throw Error(str(ctx, "unknown role '", r, "'"))
      .hint(
          "sharegpt roles are human/user, gpt/assistant, system, function_call and observation (a tool's "
          "result, LLaMA-Factory's name); the messages format takes role 'tool'");
}

// One tool call: {"name", "arguments"} or {"type": "function", "function": {"name", "arguments"}}.
tokenizer::ToolCall to_tool_call(const json& call, const std::string& ctx) {
  if (!call.is_object())
    throw Error(
        str(ctx, "a tool call must be an object {\"name\", \"arguments\"} (got ", type_name(call), ")"));
  const json& fn = call.contains("function") && call["function"].is_object() ? call["function"] : call;
  tokenizer::ToolCall tc;
  tc.name = get_string(fn, "name", true, ctx + "tool call: ");
  auto args = fn.find("arguments");
  if (args == fn.end()) args = fn.find("parameters");
  tc.arguments = args == fn.end() || args->is_null() ? "{}" : args->dump();
  return tc;
}

// A JSON value that may come as its JSON text (LLaMA-Factory stores tools and calls as strings).
json maybe_parsed(const json& v, const std::string& ctx) {
  if (!v.is_string()) return v;
  const std::string& text = v.get_ref<const std::string&>();
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    throw Error(str(ctx, "is a string that is not valid JSON (",
                    io::describe_json_failure(text, io::diagnose_json(text)), ")"));
  return j;
}

std::vector<tokenizer::ToolCall> to_tool_calls(const json& value, const std::string& ctx) {
  json v = maybe_parsed(value, ctx);
  std::vector<tokenizer::ToolCall> calls;
  if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) calls.push_back(to_tool_call(v[i], str(ctx, "[", i, "] ")));
  } else {
    calls.push_back(to_tool_call(v, ctx));
  }
  if (calls.empty()) throw Error(str(ctx, "has no tool call"));
  return calls;
}

// The record's "tools": a list of schemas (or its JSON text); each wrapped as transformers expects.
std::vector<std::string> read_tools(const json& rec) {
  auto it = rec.find("tools");
  if (it == rec.end() || it->is_null() || (it->is_string() && it->get_ref<const std::string&>().empty()))
    return {};
  json v = maybe_parsed(*it, "'tools' ");
  if (v.is_object()) v = json::array({v});
  if (!v.is_array()) throw Error(str("'tools' must be a list of function schemas (got ", type_name(v), ")"));
  std::vector<std::string> out;
  for (size_t i = 0; i < v.size(); ++i) {
    const json& t = v[i];
    if (!t.is_object()) throw Error(str("tools[", i, "] must be an object (got ", type_name(t), ")"));
    if (t.value("type", "") == "function" && t.contains("function"))
      out.push_back(t.dump());
    else
      out.push_back(json{{"type", "function"}, {"function", t}}.dump());
  }
  return out;
}

// Data that must not be read as anything else: preference pairs and OpenAssistant message trees.
void refuse_unsupported(const json& rec) {
  if (rec.contains("chosen") && rec.contains("rejected"))
    throw Error(
        "DPO / preference data is not supported yet: the record has 'chosen' and 'rejected' (a preference "
        "pair, not one conversation to train on)")
        .hint(
            "hsloth trains supervised (SFT) data; to use only the preferred answers, write each prompt with "
            "its 'chosen' reply as a conversation ({\"messages\": [...]} per line)");
  if ((rec.contains("message_id") && rec.contains("parent_id")) || rec.contains("message_tree_id"))
    throw Error(
        "OpenAssistant (OASST) message trees are not supported: each record is one message of a tree "
        "(message_id / parent_id / role prompter|assistant), not a conversation")
        .hint(
            "convert the trees to conversations first: follow each path from a root prompt to a leaf (or at "
            "each step the reply with the best rank) and write it as {\"messages\": [{\"role\": \"user\", "
            "\"content\": ...}, {\"role\": \"assistant\", ...}]} per line (prompter -> user)");
}

const json* list_of(const json& rec, std::initializer_list<const char*> keys, std::string* which) {
  for (const char* k : keys) {
    auto it = rec.find(k);
    if (it != rec.end()) {
      *which = k;
      return &*it;
    }
  }
  return nullptr;
}
}  // namespace

Format detect_format(const json& rec, std::string* why) {
  auto say = [&](const std::string& s) {
    if (why) *why = s;
  };
  if (!rec.is_object())
    throw Error(str("the first record is a JSON ", type_name(rec), ", not an object"))
        .hint("records are JSON objects such as {\"instruction\": ..., \"output\": ...}");
  refuse_unsupported(rec);
  if (rec.contains("instruction")) {
    say("has 'instruction'");
    return Format::alpaca;
  }
  for (const char* k : {"conversations", "messages", "conversation"}) {
    auto it = rec.find(k);
    if (it == rec.end()) continue;
    if (it->is_array() && !it->empty() && (*it)[0].is_object()) {
      const json& m0 = (*it)[0];
      if (m0.contains("from") || m0.contains("value")) {
        say(str("has '", k, "' with from/value items"));
        return Format::sharegpt;
      }
      if (m0.contains("role")) {
        say(str("has '", k, "' with role/content items"));
        return std::string(k) == "messages" ? Format::messages : Format::sharegpt;
      }
    }
    say(str("has '", k, "'"));
    return std::string(k) == "messages" ? Format::messages : Format::sharegpt;
  }
  if (rec.contains("text")) {
    for (const char* k : {"role", "from", "parent_id", "message_id", "replies"})
      if (rec.contains(k))
        throw Error(str("the first record has 'text' and '", k, "' (", keys_of(rec),
                        "): it looks like one message of a conversation, not a text record"))
            .hint(
                "records are conversations ({\"messages\": [...]}) or plain text ({\"text\": ...}); pass "
                "--format text only if every record's 'text' is a whole training text");
    say("has 'text'");
    return Format::text;
  }
  throw Error(str("cannot tell the format from the first record's keys (", keys_of(rec), ")"))
      .hint(
          "pass --format alpaca|sharegpt|messages|text; auto knows instruction/output, conversations, "
          "messages "
          "and text");
}

Example to_example(const json& rec, Format format) {
  if (!rec.is_object()) throw Error(str("record is a JSON ", type_name(rec), ", not an object"));
  refuse_unsupported(rec);
  Example ex;
  ex.format = format;
  switch (format) {
    case Format::text: {
      ex.text = get_string(rec, "text", true);
      break;
    }
    case Format::alpaca: {
      ex.instruction = get_string(rec, "instruction", true);
      ex.input = get_string(rec, "input", false);
      ex.output = get_string(rec, "output", true);
      std::string system = get_string(rec, "system", false);
      if (!system.empty()) ex.messages.push_back({"system", system, ""});
      auto h = rec.find("history");
      if (h != rec.end() && !h->is_null()) {
        if (!h->is_array()) throw Error("'history' must be a list of [instruction, response] pairs");
        for (size_t i = 0; i < h->size(); ++i) {
          const json& pair = (*h)[i];
          if (!pair.is_array() || pair.size() != 2 || !pair[0].is_string() || !pair[1].is_string())
            throw Error(str("history[", i, "] must be a pair of strings [instruction, response]"));
          ex.messages.push_back({"user", pair[0].get<std::string>(), ""});
          ex.messages.push_back({"assistant", pair[1].get<std::string>(), ""});
        }
      }
      break;
    }
    case Format::sharegpt: {
      std::string key;
      const json* list = list_of(rec, {"conversations", "messages", "conversation"}, &key);
      if (!list) throw Error(str("'conversations' is missing (keys: ", keys_of(rec), ")"));
      if (!list->is_array()) throw Error(str("'", key, "' must be a list (got ", type_name(*list), ")"));
      std::string system = get_string(rec, "system", false);
      if (!system.empty()) ex.messages.push_back({"system", system, ""});
      ex.tools = read_tools(rec);
      for (size_t i = 0; i < list->size(); ++i) {
        const json& m = (*list)[i];
        std::string ctx = str(key, "[", i, "]: ");
        if (!m.is_object()) throw Error(str(ctx, "must be an object (got ", type_name(m), ")"));
        std::string role =
            m.contains("from") ? get_string(m, "from", true, ctx) : get_string(m, "role", true, ctx);
        role = map_sharegpt_role(role, ctx);
        const char* content_key = m.contains("value") ? "value" : "content";
        if (role == "function_call") {  // the value is the call itself; the assistant says nothing else
          auto v = m.find(content_key);
          if (v == m.end() || v->is_null()) throw Error(str(ctx, "'", content_key, "' is missing"));
          tokenizer::Message call{"assistant", "", ""};
          call.tool_calls = to_tool_calls(*v, ctx);
          ex.messages.push_back(std::move(call));
          continue;
        }
        ex.messages.push_back({role, get_content(m, content_key, ctx), ""});
      }
      break;
    }
    case Format::messages: {
      auto it = rec.find("messages");
      if (it == rec.end()) throw Error(str("'messages' is missing (keys: ", keys_of(rec), ")"));
      if (!it->is_array()) throw Error(str("'messages' must be a list (got ", type_name(*it), ")"));
      ex.tools = read_tools(rec);
      for (size_t i = 0; i < it->size(); ++i) {
        const json& m = (*it)[i];
        std::string ctx = str("messages[", i, "]: ");
        if (!m.is_object()) throw Error(str(ctx, "must be an object (got ", type_name(m), ")"));
        std::string role = get_string(m, "role", true, ctx);
        if (role != "system" && role != "user" && role != "assistant" && role != "tool")
          throw Error(str(ctx, "unknown role '", role, "'"))
              .hint("messages roles are system, user, assistant and tool");
        auto calls = m.find("tool_calls");
        const bool has_calls =
            calls != m.end() && !calls->is_null() && !(calls->is_array() && calls->empty());
        if (has_calls && role != "assistant")
          throw Error(str(ctx, "only assistant messages make tool calls"));
        auto content = m.find("content");
        const bool no_content = content == m.end() || content->is_null();
        tokenizer::Message msg{role, has_calls && no_content ? "" : get_content(m, "content", ctx), ""};
        if (has_calls) {
          if (!calls->is_array()) throw Error(str(ctx, "'tool_calls' must be a list"));
          msg.tool_calls = to_tool_calls(*calls, ctx);
        }
        msg.reasoning = get_string(m, "reasoning_content", false, ctx);
        if (msg.reasoning.empty()) msg.reasoning = get_string(m, "reasoning", false, ctx);
        if (!msg.reasoning.empty() && role != "assistant")
          throw Error(str(ctx, "reasoning is only allowed on assistant messages"));
        ex.messages.push_back(std::move(msg));
      }
      break;
    }
  }
  if (format != Format::text && format != Format::alpaca && ex.messages.empty())
    throw Error("the conversation has no messages");
  return ex;
}

tokenizer::Conversation to_conversation(const Example& ex, const tokenizer::ChatTemplate& chat_template) {
  HS_CHECK(ex.format != Format::text, "text examples have no conversation");
  tokenizer::Conversation c;
  c.messages = ex.messages;
  c.tools = ex.tools;
  if (ex.format == Format::alpaca) {
    tokenizer::Conversation row = chat_template.alpaca_row(ex.instruction, ex.input, ex.output);
    c.messages.insert(c.messages.end(), row.messages.begin(), row.messages.end());
  }
  return c;
}

}  // namespace hs::data_tools
