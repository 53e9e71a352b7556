// render_template_main: the chat-template parity harness's C++ side. Reads one JSON request per stdin line
//   {"family": "chatml"|…|"auto"|"custom", "bos": "<s>", "eos": "</s>", "jinja": "...",
//    "add_generation_prompt": false, "enable_thinking": true, "date_string": "",
//    "custom": {"bos": "...", "roles": {"user": ["prefix", "suffix"], ...}, "generation_prompt": "..."},
//    "alpaca_row": ["instruction", "input", "output"],          (instead of "messages")
//    "messages": [{"role": "user", "content": "...", "reasoning": "...",
//                  "tool_calls": [{"type": "function", "function": {"name": ..., "arguments": {...}}}]},
//                  ...],
//    "tools": [{...}, ...], "markers": true}                    (tools: schemas as HF takes them)
// and writes one JSON line per request: {"name": family, "text": ..., "spans": [[[b, e], ...], ...]}, or
// {"error": message} when rendering throws hs::Error; with "markers", also the family's special markers.
// It uses only TemplateContext strings (no Tokenizer). JSON keys keep their order (tool schemas print so).
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "tokenizer/chat_template.h"

using json = nlohmann::ordered_json;
using namespace hs::tokenizer;

namespace {

json render_one(const json& req) {
  TemplateContext ctx;
  ctx.bos_text = req.value("bos", "");
  ctx.eos_text = req.value("eos", "");
  ctx.jinja = req.value("jinja", "");
  ctx.date_string = req.value("date_string", "");
  const std::string family = req.value("family", "");
  auto tpl = [&] {
    if (family != "custom") return ChatTemplate::named(family, ctx);
    const json& c = req.at("custom");
    CustomTemplate spec;
    spec.bos = c.value("bos", "");
    spec.generation_prompt = c.value("generation_prompt", "");
    for (const auto& [role, affixes] : c.at("roles").items())
      spec.role_affixes[role] = {affixes.at(0).get<std::string>(), affixes.at(1).get<std::string>()};
    return ChatTemplate::custom(spec, ctx);
  }();
  Conversation conv;
  if (req.contains("alpaca_row")) {
    const json& row = req.at("alpaca_row");
    conv = tpl.alpaca_row(row.at(0).get<std::string>(), row.at(1).get<std::string>(),
                          row.at(2).get<std::string>());
  } else {
    for (const json& m : req.at("messages")) {
      Message msg{m.at("role").get<std::string>(), m.at("content").get<std::string>(),
                  m.value("reasoning", "")};
      for (const json& call : m.value("tool_calls", json::array())) {
        const json& fn = call.at("function");
        msg.tool_calls.push_back({fn.at("name").get<std::string>(), fn.at("arguments").dump()});
      }
      conv.messages.push_back(std::move(msg));
    }
    for (const json& t : req.value("tools", json::array())) conv.tools.push_back(t.dump());
  }
  RenderOptions options;
  options.add_generation_prompt = req.value("add_generation_prompt", false);
  options.enable_thinking = req.value("enable_thinking", true);
  Rendered r = tpl.render(conv, options);
  json spans = json::array();
  for (const auto& turn : r.assistant_spans) {
    json t = json::array();
    for (const auto& [b, e] : turn) t.push_back({b, e});
    spans.push_back(t);
  }
  json out{{"name", tpl.name()}, {"text", r.text}, {"spans", spans}};
  if (req.value("markers", false)) out["markers"] = tpl.special_markers();
  return out;
}

}  // namespace

int main() {
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    json out;
    try {
      out = render_one(json::parse(line));
    } catch (const hs::Error& e) {
      out = json{{"error", std::string(e.what())}};
    } catch (const json::exception& e) {
      std::cerr << "render_template_main: bad request line: " << e.what() << "\n";
      return 2;
    }
    std::cout << out.dump() << "\n";
  }
  return 0;
}
