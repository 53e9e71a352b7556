// `hsloth generate --model M [--adapter A] --prompt S [--chat] [--max-new N] [--temperature T --top-p P |
// --greedy] [--seed S]`: KV-cached decoding. The prompt is encoded with the model folder's tokenizer
// (with --chat, rendered first through the tokenizer's chat template with a generation prompt), run once
// through the model to fill the cache, then one token at a time. Text is streamed as it is produced:
// after each token the generation is decoded and only the new complete UTF-8 is printed (a token that
// ends in the middle of a character waits for the next). Stops at an EOS id (config.json,
// generation_config.json and the tokenizer's) or after --max-new tokens. Sampling follows transformers'
// order: temperature, top-k, top-p, then a draw from a seeded generator; --greedy takes the argmax (the same
// tokens as transformers' greedy generate). The decoding itself is model/generate.h's, shared with the
// trainer's exact-match eval.
#include <ATen/core/grad_mode.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/model_flags.h"
#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "io/file.h"
#include "io/hf_config.h"
#include "io/json.h"
#include "lora/lora.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/runtime.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace {
namespace fs = std::filesystem;

hs::config::Schema schema() {
  hs::config::Schema s("generate",
                       "--model DIR [--adapter DIR] --prompt TEXT [--chat] [--max-new N] "
                       "[--temperature T --top-p P | --greedy] [--seed S]",
                       "Generate text from a model (plus a LoRA adapter) with a KV cache, streaming tokens\n"
                       "as they are produced. --chat applies the tokenizer's chat template.");
  s.input_path("model", "", "model folder (config.json, safetensors, tokenizer.json)", true);
  s.input_path("adapter", "", "LoRA adapter folder (PEFT format), merged in memory");
  s.str("prompt", "", "the prompt text (or the user message with --chat)", true);
  s.flag("chat", "render the prompt as a user turn with the chat template (add_generation_prompt)");
  s.str("system", "", "with --chat: a system message");
  s.str("template", "auto", "with --chat: chat template family (auto = from tokenizer_config.json)");
  s.integer("max-new", 256, "largest number of new tokens", 1, 1 << 20);
  s.real("temperature", 0.7, "sampling temperature (0 = greedy)", 0, 100);
  s.real("top-p", 0.9, "nucleus sampling: smallest token set with this much probability", 0, 1);
  s.integer("top-k", 0, "sample among the k most likely tokens (0 = all)", 0, 1 << 30);
  s.flag("greedy", "always take the most likely token (deterministic)");
  s.integer("seed", 0, "seed of the sampler", 0, 9.2e18);
  s.flag("ids", "print the generated token ids (one line) instead of streaming text");
  hs::cli::add_model_flags(s);
  s.config_file(false);
  return s;
}

// The options of a `hsloth generate` run, read from its config here and nowhere else.
struct Options {
  std::string model, adapter, prompt, system, template_name;
  bool chat = false, print_ids = false;
  int64_t max_new = 256;
  uint64_t seed = 0;
  hs::model::Sampling sampling;
  hs::cli::ModelFlags load;  // --device, --dtype, --quant
};

Options read_options(const hs::config::Config& cfg) {
  Options o;
  o.model = cfg.get("model");
  o.adapter = cfg.get("adapter");
  o.prompt = cfg.get("prompt");
  o.system = cfg.get("system");
  o.template_name = cfg.get("template");
  o.chat = cfg.get_bool("chat");
  o.print_ids = cfg.get_bool("ids");
  o.max_new = cfg.get_int("max-new");
  o.seed = uint64_t(cfg.get_int("seed"));
  o.sampling.greedy = cfg.get_bool("greedy");
  o.sampling.temperature = cfg.get_real("temperature");
  o.sampling.top_p = cfg.get_real("top-p");
  o.sampling.top_k = cfg.get_int("top-k");
  o.load = hs::cli::read_model_flags(cfg);
  return o;
}

// Token ids that end generation.
std::set<int64_t> eos_ids(const std::string& model_dir, const hs::io::HfConfig& config,
                          const hs::tokenizer::Tokenizer& tok) {
  std::set<int64_t> ids(config.eos_token_ids.begin(), config.eos_token_ids.end());
  fs::path gen = fs::path(model_dir) / "generation_config.json";
  std::error_code ec;
  if (fs::exists(gen, ec)) {
    auto j = hs::io::read_json(
        gen.string(),
        {"not valid JSON", "the model folder is damaged; download generation_config.json again"});
    if (j.contains("eos_token_id")) {
      const auto& e = j["eos_token_id"];
      if (e.is_number_integer()) ids.insert(e.get<int64_t>());
      if (e.is_array())
        for (const auto& x : e)
          if (x.is_number_integer()) ids.insert(x.get<int64_t>());
    }
  }
  if (tok.specials().eos >= 0) ids.insert(tok.specials().eos);
  return ids;
}

// Length of the longest prefix of `s` that does not end inside a UTF-8 character or on U+FFFD (the
// decoder's stand-in for bytes still waiting for the rest of their character).
size_t complete_prefix(const std::string& s) {
  size_t n = s.size();
  const std::string fffd = "\xEF\xBF\xBD";
  while (n >= 3 && s.compare(n - 3, 3, fffd) == 0) n -= 3;
  size_t i = n;  // back off an incomplete trailing sequence
  size_t k = 0;
  while (i > 0 && k < 4 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) --i, ++k;
  if (i > 0) {
    unsigned char lead = static_cast<unsigned char>(s[i - 1]);
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (need > 1 && k + 1 < need) n = i - 1;
  }
  return n;
}

int run(const hs::config::Config& cfg) {
  const Options o = read_options(cfg);
  const std::string& model_dir = o.model;
  const hs::model::LoadOptions lo = hs::cli::load_options(o.load, model_dir);
  const at::Device device = lo.device;
  hs::Timer load_timer;
  hs::tokenizer::Tokenizer tok = hs::tokenizer::Tokenizer::from_file(model_dir);
  // An adapter is merged into a dense base; on an NF4 base (--quant nf4 or a pre-quantized folder) it stays
  // a LoRA branch, as PEFT runs it on a 4-bit base.
  hs::model::Model model =
      hs::lora::load_for_inference(model_dir, o.adapter, lo, /*merge=*/!lo.projection_factory);
  const hs::io::HfConfig& hc = model.config();
  if (tok.vocab_size() > hc.vocab_size)
    throw hs::Error(
        hs::str("the tokenizer has ", tok.vocab_size(), " tokens but the model only ", hc.vocab_size))
        .at(model_dir)
        .hint("tokenizer.json does not belong to this model");

  const std::string& text = o.prompt;
  std::vector<int32_t> prompt;
  if (o.chat) {
    hs::tokenizer::TemplateContext ctx{tok.specials().bos_text, tok.specials().eos_text, tok.chat_template()};
    auto tmpl = hs::tokenizer::ChatTemplate::named(o.template_name, ctx);
    hs::tokenizer::Conversation conv;
    if (!o.system.empty()) conv.messages.push_back({"system", o.system, ""});
    conv.messages.push_back({"user", text, ""});
    prompt =
        tok.encode_ids(tmpl.render(conv, /*add_generation_prompt=*/true).text, /*add_special_tokens=*/false);
  } else {
    prompt = tok.encode_ids(text, /*add_special_tokens=*/true);
  }
  if (prompt.empty()) throw hs::Error("the prompt encodes to no tokens").at("--prompt");
  const int64_t max_new = o.max_new;
  const int64_t total = int64_t(prompt.size()) + max_new;
  hc.check_sequence_length(total, "--prompt + --max-new");
  const std::set<int64_t> eos = eos_ids(model_dir, hc, tok);
  hs::log::info("loaded ", model_dir, " (", hc.model_type, ", ", hc.num_hidden_layers, " layers) on ",
                device.str(), " in ", hs::format_duration(load_timer.seconds()), "; prompt ", prompt.size(),
                " tokens");

  at::NoGradGuard no_grad;
  const bool print_ids = o.print_ids;
  std::vector<int32_t> generated;
  size_t printed = 0;  // bytes of the decoded generation already written
  auto stream = [&](bool final) {
    // Decoding the whole generation each time keeps decoders that look at neighbours (SentencePiece's
    // leading space, byte fallback) exact; only complete characters are printed until the end.
    std::string text = tok.decode(generated, /*skip_special_tokens=*/true);
    size_t n = final ? text.size() : complete_prefix(text);
    if (n > printed) {
      std::fwrite(text.data() + printed, 1, n - printed, stdout);
      std::fflush(stdout);
      printed = n;
    }
  };
  const std::vector<int64_t> ids64(prompt.begin(), prompt.end());
  const hs::model::Generated g =
      hs::model::generate(model, ids64, max_new, o.sampling, o.seed, eos, device, [&](int64_t next) {
        generated.push_back(int32_t(next));
        if (!print_ids) stream(false);
      });
  if (!print_ids) stream(true);
  if (print_ids) {
    std::string line;
    for (size_t i = 0; i < generated.size(); ++i) line += (i ? " " : "") + std::to_string(generated[i]);
    std::printf("%s", line.c_str());
  }
  std::printf("\n");
  std::fflush(stdout);
  const double rate = generated.size() > 1 ? double(generated.size() - 1) / std::max(g.decode_s, 1e-9) : 0.0;
  hs::log::info(generated.size(), " tokens (stop: ", g.stop, "); prefill ", prompt.size(), " tokens in ",
                hs::format_duration(g.prefill_s), ", decode ", hs::format_count(rate), " tokens/s");
  return 0;
}

hs::cli::Registrar reg{{"generate", "KV-cached text generation from a model (+adapter)", schema, run, false}};

}  // namespace
