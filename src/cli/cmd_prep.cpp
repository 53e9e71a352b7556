// `hsloth prep`: JSON/JSONL records -> chat template -> tokens + loss mask -> length-sorted HDF5 shards
// and manifest.json (the pipeline itself is data_tools/prep.h; the format is data/shard_format.h).
//
// Under `mpirun -np N` every rank makes the same first pass over the inputs (record counts, formats,
// sha256), tokenizes the records whose global index % N is its rank, and rank 0 gathers the samples, sorts
// them by (length, global index) and writes: the output is byte-identical to -np 1. The end of the run
// prints the accounting table (input records = written + each skip reason) and the throughput.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <regex>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/build_info.h"
#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "data/shard_writer.h"
#include "data_tools/prep.h"
#include "dist/communicator.h"
#include "io/file.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace {
namespace fs = std::filesystem;
using hs::data_tools::Format;

hs::config::Schema schema() {
  hs::config::Schema s(
      "prep", "--input F [F ...] --tokenizer T --out DIR [options]",
      "Pre-tokenize training data once into length-sorted HDF5 shards that every training rank reads.\n"
      "Inputs: JSON arrays or JSONL, optionally gzip-compressed (.json.gz, .jsonl.gz; detected from the "
      "bytes).\n"
      "Formats (--format, `auto` decides per file from the first well-formed record and says so):\n"
      "  alpaca    {instruction, input?, output, system?, history?}; the template decides how instruction "
      "and\n"
      "            input combine (alpaca: its own '### Input:' block; others: one user turn\n"
      "            'instruction\\n\\ninput')\n"
      "  sharegpt  {conversations|messages: [{from|role: human/user/gpt/assistant/system/function_call/\n"
      "            observation, value|content}], tools?} (tools: qwen2.5 and llama3 templates only)\n"
      "  messages  {messages: [{role, content, reasoning_content?}]} (reasoning: qwen3 <think> text)\n"
      "  text      {text}: no template; encoded with the tokenizer's own special tokens (e.g. BOS), EOS\n"
      "            appended, every token but the first trained (--loss does not apply)\n"
      "Conversations are rendered with --template (auto = from the tokenizer's chat template; "
      "byte-identical\n"
      "to HF apply_chat_template) and encoded without adding special tokens. Loss masks: `full` trains "
      "every\n"
      "token but the first; `response` trains the tokens overlapping assistant turns (content + end-of-turn\n"
      "token; with --last-turn-only only the last assistant turn). The first token is never a target.\n"
      "Policies, all counted in the final table and in manifest.json (input = written + skips):\n"
      "  too long (> --max-len): --too-long drop|truncate; fewer than 2 tokens or no trained token: "
      "dropped;\n"
      "  malformed record (bad JSON, missing field, unknown role, template rejects it): --on-error "
      "fail|skip;\n"
      "  invalid UTF-8: --invalid-utf8 repair (U+FFFD, as Python's errors='replace') | fail.\n"
      "Parallel: mpirun -np N hsloth prep ... splits records over ranks; the output is byte-identical.");
  s.list("input", "", "input files (JSON array or JSONL, optionally .gz)");
  s.path("tokenizer", "", "tokenizer.json, or the folder holding it (with tokenizer_config.json)", true);
  s.path("out", "", "output folder for shard-NNNNN.h5 files and manifest.json", true);
  s.choice("format", "auto", {"auto", "alpaca", "sharegpt", "messages", "text"},
           "record format of the inputs");
  s.choice("template", "auto",
           {"auto", "chatml", "qwen2.5", "qwen3", "llama3", "llama3.0", "llama2", "mistral", "zephyr",
            "alpaca", "none"},
           "chat template for conversations (auto: detected from the tokenizer's chat template)");
  s.flag(
      "allow-split-markers",
      "accept a template whose special markers (e.g. <|im_start|>) are not single tokens of the tokenizer");
  s.choice("loss", "response", {"full", "response"}, "which tokens are trained (see above)");
  s.flag("last-turn-only", "with --loss response: train only the last assistant turn");
  s.integer("max-len", 0,
            "longest sample in tokens (0 = no limit); default: the tokenizer's model_max_length "
            "(tokenizer_config.json) when it sets one, else no limit",
            0, 1e12);
  s.choice("too-long", "drop", {"drop", "truncate"}, "what to do with samples longer than --max-len");
  s.choice("on-error", "fail", {"fail", "skip"}, "malformed records: stop with file:line, or count and skip");
  s.choice("invalid-utf8", "repair", {"repair", "fail"},
           "invalid UTF-8 in a record: replace with U+FFFD, or stop");
  s.integer("shard-tokens", 50'000'000, "tokens per shard file (a shard closes before exceeding it)", 1,
            1e15);
  s.integer("compress", 0, "deflate level of the HDF5 datasets, 0 (none) to 9", 0, 9);
  s.flag("overwrite", "replace the shards of an earlier prep in --out");
  return s;
}

std::string pct(int64_t part, int64_t whole) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f%%", whole ? 100.0 * double(part) / double(whole) : 0.0);
  return b;
}

// The folder name of tokenizer.json ("qwen2.5"), which is how users tell their tokenizers apart.
std::string tokenizer_name(const std::string& resolved) {
  fs::path p(resolved);
  std::string parent = p.parent_path().filename().string();
  return parent.empty() ? p.filename().string() : parent;
}

void check_out_dir(const std::string& out, bool overwrite) {
  if (!hs::io::exists(out)) return;
  if (!hs::io::is_directory(out)) throw hs::Error("--out exists and is not a folder").at(out);
  static const std::regex ours(R"(shard-\d{5,}\.h5)");
  bool has_ours = false;
  for (const auto& e : fs::directory_iterator(out)) {
    std::string name = e.path().filename().string();
    if (name == hs::data::kManifestName || std::regex_match(name, ours)) has_ours = true;
  }
  if (has_ours && !overwrite)
    throw hs::Error("--out already holds shards")
        .at(out)
        .hint("pass --overwrite to replace them, or choose another --out folder");
}

int run(const hs::config::Config& cfg) {
  using namespace hs;
  Timer total_timer;
  // Prep moves host bytes only: the CPU communicator (local for one rank, MPI for several).
  const std::unique_ptr<dist::Communicator> comm = dist::make_communicator(at::Device(at::kCPU));
  const int rank = comm->rank(), world = comm->world();

  data_tools::PrepOptions opt;
  opt.format = data_tools::parse_format(cfg.get("format"));
  opt.loss = cfg.get("loss") == "full" ? data_tools::LossPolicy::full : data_tools::LossPolicy::response;
  opt.last_turn_only = cfg.get_bool("last-turn-only");
  if (opt.last_turn_only && opt.loss == data_tools::LossPolicy::full)
    throw Error("--last-turn-only needs --loss response")
        .hint("drop --last-turn-only, or use --loss response");
  opt.max_len = cfg.get_int("max-len");
  opt.too_long = cfg.get("too-long") == "truncate" ? data_tools::TooLongPolicy::truncate
                                                   : data_tools::TooLongPolicy::drop;
  opt.skip_errors = cfg.get("on-error") == "skip";
  opt.utf8 =
      cfg.get("invalid-utf8") == "fail" ? data_tools::Utf8Policy::fail : data_tools::Utf8Policy::repair;
  const std::vector<std::string> paths = cfg.get_list("input");
  if (paths.empty()) throw Error("no --input files").hint("pass --input FILE [FILE ...]");
  const std::string out = cfg.get("out");
  check_out_dir(out, cfg.get_bool("overwrite"));

  // Tokenizer and first pass (every rank: cheap next to tokenization, and no broadcast needed).
  Timer phase;
  auto tok = tokenizer::Tokenizer::from_file(cfg.get("tokenizer"));
  const double load_s = phase.seconds();
  if (!cfg.given("max-len")) {
    if (auto m = tok.model_max_length()) {
      opt.max_len = *m;
      log::info("--max-len ", *m,
                " (the tokenizer's model_max_length; pass --max-len N to change it, 0 for "
                "no limit)");
    }
  }
  phase.reset();
  std::vector<data_tools::InputFile> inputs = data_tools::scan_inputs(paths, opt.format, opt.utf8);
  const double scan_s = phase.seconds();
  int64_t records = 0, bytes = 0;
  bool any_chat = false;
  std::string formats;
  for (const auto& f : inputs) {
    records += f.records;
    bytes += f.bytes;
    any_chat |= f.format != Format::text && f.records > 0;
    std::string name = data_tools::format_name(f.format);
    if (f.records > 0 && ("," + formats + ",").find("," + name + ",") == std::string::npos)
      formats += (formats.empty() ? "" : ",") + name;
    log::info(f.path, ": ", f.records, " records, ", format_bytes(double(f.bytes)), ", format ", name, " (",
              f.why, ")");
  }

  std::optional<tokenizer::ChatTemplate> chat;
  std::string template_name = "none";
  if (any_chat) {
    const auto& sp = tok.specials();
    chat.emplace(tokenizer::ChatTemplate::named(cfg.get("template"),
                                                {sp.bos_text, sp.eos_text, tok.chat_template(), ""}));
    template_name = chat->name();
    const std::string tok_label = tok.path();
    if (!cfg.get_bool("allow-split-markers"))
      chat->check_markers([&tok](std::string_view m) { return tok.encode(m, false).ids.size(); }, tok_label);
    else
      log::warn("--allow-split-markers: template ", template_name, "'s markers may be encoded as text by ",
                tok_label);
    log::info("template ", template_name,
              cfg.get("template") == "auto" ? " (auto, from the tokenizer's chat template)" : "", "; loss ",
              data_tools::loss_policy_name(opt));
  }

  data_tools::RecordProcessor proc(
      {[&tok](std::string_view text, bool add_special) { return tok.encode(text, add_special); },
       tok.specials().eos, chat ? &*chat : nullptr},
      opt);
  Progress progress("prep", records, "records");
  Timer tok_timer;
  data_tools::RankResult mine =
      data_tools::run_records(inputs, proc, rank, world, [&](int64_t done) { progress.update(done); });
  progress.finish();

  // Gather to rank 0 (one rank at a time: only rank 0 ever holds everything), then share the counts.
  data::SampleSet samples;
  data_tools::PrepCounts counts;
  if (world > 1) {
    // One message per rank: [u64 length of the counts JSON][counts JSON][serialized samples].
    std::string packed(sizeof(uint64_t), '\0');
    {
      std::string payload = mine.counts.to_json().dump();
      uint64_t n = payload.size();
      std::memcpy(packed.data(), &n, sizeof n);
      packed += payload;
      packed += mine.samples.serialize();
      mine = {};  // the samples now live only in `packed`
    }
    std::vector<std::string> all = comm->gather_bytes(packed, 0);
    packed = {};
    for (size_t r = 0; r < all.size(); ++r) {
      const std::string& b = all[r];
      uint64_t len = 0;
      HS_CHECK(b.size() >= sizeof len, "short payload from rank ", r);
      std::memcpy(&len, b.data(), sizeof len);
      HS_CHECK(b.size() >= sizeof len + len, "short payload from rank ", r);
      counts.add(data_tools::PrepCounts::from_json(nlohmann::json::parse(b.substr(sizeof len, len))));
      samples.append(data::SampleSet::deserialize(std::string_view(b).substr(sizeof len + len)));
      all[r].clear();
      all[r].shrink_to_fit();
    }
    // Every rank checks the same totals below.
    counts = data_tools::PrepCounts::from_json(
        nlohmann::json::parse(comm->broadcast_bytes(rank == 0 ? counts.to_json().dump() : std::string(), 0)));
  } else {
    samples = std::move(mine.samples);
    counts = mine.counts;
  }
  const double tokenize_s = tok_timer.seconds();  // until the slowest rank's samples are on rank 0
  if (counts.records != records || counts.records != counts.written + counts.skipped())
    throw Error(str("record accounting does not balance: ", records, " records in the inputs, ",
                    counts.records, " processed, ", counts.written, " written + ", counts.skipped(),
                    " skipped"))
        .hint("this is a bug; please report it with the command line");

  int rc = 0;
  if (rank == 0) {
    log::info("records:\n", counts.table());
    data::ShardMeta meta;
    meta.tokenizer_name = tokenizer_name(tok.path());
    meta.tokenizer_sha256 = tok.sha256();
    meta.vocab_size = tok.vocab_size();
    meta.bos_id = tok.specials().bos;
    meta.eos_id = tok.specials().eos;
    meta.pad_id = tok.specials().pad;
    meta.template_name = template_name;
    meta.loss_policy = data_tools::loss_policy_name(opt);
    meta.formats = formats;
    meta.max_len = opt.max_len;
    meta.created_by = "hsloth " + build_info().version;
    nlohmann::json sources = nlohmann::json::array();
    for (const auto& f : inputs) {
      meta.source_names.push_back(f.name);
      meta.source_sha256.push_back(f.sha256);
      sources.push_back(
          {{"file", f.name}, {"format", data_tools::format_name(f.format)}, {"records", f.records}});
    }
    nlohmann::json prep = counts.to_json();
    prep["sources"] = sources;
    prep["options"] = {{"template", template_name},
                       {"loss", meta.loss_policy},
                       {"max_len", opt.max_len},
                       {"too_long", cfg.get("too-long")},
                       {"on_error", cfg.get("on-error")},
                       {"invalid_utf8", cfg.get("invalid-utf8")},
                       {"shard_tokens", cfg.get_int("shard-tokens")},
                       {"compress", cfg.get_int("compress")}};
    if (counts.written == 0)
      throw Error("no samples written: every input record was skipped (see the table above)")
          .at(out)
          .hint("check --format/--template/--max-len, or look at the warnings above");
    data::WriteOptions wo;
    wo.shard_tokens = cfg.get_int("shard-tokens");
    wo.compress = int(cfg.get_int("compress"));
    Timer write_timer;
    data::Manifest m = data::write_shard_set(out, samples, meta, wo, prep);
    const double write_s = write_timer.seconds(), all_s = total_timer.seconds();
    log::info("wrote ", m.shards.size(), " shard", m.shards.size() == 1 ? "" : "s", " to ", out, ": ",
              m.samples, " samples, ", m.tokens, " tokens, ", m.trained, " trained (",
              pct(m.trained, m.tokens), ")");
    log::info("throughput on ", world, " rank", world == 1 ? "" : "s", ": ",
              format_count(double(records) / tokenize_s), " records/s, ",
              format_count(double(counts.tokens) / tokenize_s),
              " tokens/s in the tokenize phase (load tokenizer ", format_duration(load_s), ", first pass ",
              format_duration(scan_s), ", tokenize + gather ", format_duration(tokenize_s), ", sort + write ",
              format_duration(write_s), ", total ", format_duration(all_s), ")");
  }
  comm->barrier();  // other ranks end with rank 0's write (an error there aborts the job)
  return rc;
}

hs::cli::Registrar reg{
    {"prep", "JSON/JSONL -> tokens + loss mask -> HDF5 shards", schema, run, /*needs_mpi=*/true}};

}  // namespace
