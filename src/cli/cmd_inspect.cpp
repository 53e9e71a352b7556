// `hsloth inspect DIR`: what a shard folder holds and how well it batches. Opens it with ShardIndex
// (which validates everything but the token bytes; --verify also checks every file's sha256), then prints
// totals, length percentiles and a histogram, the trained-token fraction, prep's record accounting, and
// the padding waste of padded vs packed micro-batches at --tokens-per-batch (definitions in
// data/shard_stats.h, repeated in the output). With --world N and/or --grad-accum G it builds the training
// BatchPlan exactly as `hsloth train` does (same options, same seed) and reports its micro-batches and, per
// optimizer step, BatchPlan::step_stats(): the tokens and the imbalance (largest rank's tokens / mean) that
// the trainer logs to metrics.jsonl; --steps lists every step of the first epoch. No statistic here is
// computed by an algorithm of its own. --json prints the same numbers as one object.
#include <algorithm>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/error.h"
#include "core/timer.h"
#include "data/batch_plan.h"
#include "data/shard_index.h"
#include "data/shard_stats.h"

namespace {

hs::config::Schema schema() {
  hs::config::Schema s(
      "inspect", "DIR [--tokens-per-batch N] [--world N] [--grad-accum G] [--steps] [--verify] [--json]",
      "Statistics of a shard folder written by hsloth prep (or of one shard file).");
  s.input_path("dir", "", "shard folder (or a single .h5 shard)", true);
  s.positional("dir");
  s.integer("tokens-per-batch", 4096, "token budget per batch for the padding/packing estimate", 1, 1e12);
  s.integer("world", 1, "ranks of a planned run: report the per-step token imbalance across them", 1, 1 << 20);
  s.integer("grad-accum", 1, "micro-batches per rank per optimizer step (with --world)", 1, 1 << 20);
  s.integer("seed", 42, "batch-order seed of the planned run (train.seed)", 0, 1e18);
  s.choice("packing", "packed", {"packed", "padded"}, "train.packing of the planned run");
  s.flag("steps", "with --world/--grad-accum: list every optimizer step of the first epoch");
  s.flag("verify", "also check every shard file's sha256 against the manifest (reads all bytes)");
  s.flag("json", "print one JSON object instead of text");
  s.config_file(false);
  return s;
}

nlohmann::ordered_json waste_json(const hs::data::BatchWaste& w) {
  return {{"batches", w.batches}, {"slots", w.slots}, {"padding", w.padding}, {"waste", w.waste()}};
}

std::string pct(double f) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f%%", 100.0 * f);
  return b;
}

// The planned run's BatchPlan over every sample of the folder (train's plan when data.eval_fraction = 0),
// and how evenly its steps deal tokens to ranks, summarised over one epoch.
struct Balance {
  int64_t steps = 0, micro_batches = 0;
  double padding = 0;
  double mean = 1, p90 = 1, max = 1;
  std::vector<hs::data::StepStats> per_step;  // the first epoch's steps
};
Balance plan_balance(const hs::data::ShardIndex& idx, int64_t tokens_per_batch, int world, int grad_accum,
                     uint64_t seed, hs::data::Packing packing) {
  hs::data::PlanOptions po;
  po.tokens_per_batch = tokens_per_batch;
  po.packing = packing;
  po.world_size = world;
  po.grad_accum = grad_accum;
  po.seed = seed;
  std::vector<int64_t> ids(size_t(idx.num_samples()));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int64_t(i);
  auto plan = hs::data::BatchPlan::build(idx.lengths(), idx.trained(), ids, po);
  Balance b;
  b.steps = plan.steps_per_epoch();
  b.micro_batches = int64_t(plan.micro_batches().size());
  b.padding = plan.padding_fraction();
  std::vector<double> r;
  for (int64_t st = 0; st < b.steps; ++st) {
    b.per_step.push_back(plan.step_stats(st));
    r.push_back(b.per_step.back().imbalance);
  }
  if (r.empty()) return b;
  double total = 0;
  for (double x : r) total += x;
  b.mean = total / double(r.size());
  std::sort(r.begin(), r.end());
  b.p90 = r[std::min(r.size() - 1, size_t(0.9 * double(r.size())))];
  b.max = r.back();
  return b;
}

int run(const hs::config::Config& cfg) {
  using namespace hs;
  data::ShardIndex::Options o;
  o.verify_checksums = cfg.get_bool("verify");
  data::ShardIndex idx = data::ShardIndex::open(cfg.get("dir"), o);
  const int64_t n = cfg.get_int("tokens-per-batch");
  const int world = int(cfg.get_int("world")), accum = int(cfg.get_int("grad-accum"));
  data::ShardStats s = data::compute_stats(idx.lengths(), idx.trained(), n, 0, world, accum);
  const data::ShardMeta& m = idx.meta();
  const nlohmann::json& prep = idx.manifest().prep;
  const bool planned = world > 1 || accum > 1;
  const data::Packing packing = data::parse_packing(cfg.get("packing"));
  Balance bal;
  if (planned) bal = plan_balance(idx, n, world, accum, uint64_t(cfg.get_int("seed")), packing);
  const bool list_steps = planned && cfg.get_bool("steps");

  if (cfg.get_bool("json")) {
    nlohmann::ordered_json j;
    j["path"] = idx.path();
    j["shards"] = idx.shards().size();
    j["samples"] = s.samples;
    j["tokens"] = s.tokens;
    j["trained"] = s.trained;
    j["trained_fraction"] = s.tokens ? double(s.trained) / double(s.tokens) : 0.0;
    j["length"] = {{"min", s.min_len}, {"p50", s.p50},     {"p90", s.p90},
                   {"p99", s.p99},     {"max", s.max_len}, {"mean", s.mean_len}};
    nlohmann::ordered_json h = nlohmann::json::array();
    for (const auto& b : s.histogram) h.push_back({{"lo", b.lo}, {"hi", b.hi}, {"count", b.count}});
    j["histogram"] = h;
    j["tokens_per_batch"] = n;
    j["over_budget"] = s.over_budget;
    j["padded_shuffled"] = waste_json(s.padded_shuffled);
    j["padded_grouped"] = waste_json(s.padded_grouped);
    j["padded"] = waste_json(s.padded);
    j["packed"] = waste_json(s.packed);
    if (planned) {
      j["plan"] = {{"world", world},
                   {"grad_accum", accum},
                   {"packing", cfg.get("packing")},
                   {"seed", cfg.get_int("seed")},
                   {"steps_per_epoch", bal.steps},
                   {"micro_batches", bal.micro_batches},
                   {"padding", bal.padding},
                   {"imbalance_mean", bal.mean},
                   {"imbalance_p90", bal.p90},
                   {"imbalance_max", bal.max}};
      if (list_steps) {
        nlohmann::ordered_json steps = nlohmann::json::array();
        for (size_t i = 0; i < bal.per_step.size(); ++i) {
          const auto& st = bal.per_step[i];
          steps.push_back({{"step", int64_t(i) + 1},
                           {"micro_batches", st.micro_batches},
                           {"rank_micro_batches", st.rank_micro_batches},
                           {"tokens", st.tokens},
                           {"trained_tokens", st.trained},
                           {"rank_tokens", st.rank_tokens},
                           {"imbalance", st.imbalance}});
        }
        j["plan"]["steps"] = steps;
      }
    }
    j["tokenizer"] = {
        {"name", m.tokenizer_name}, {"sha256", m.tokenizer_sha256}, {"vocab_size", m.vocab_size}};
    j["template"] = m.template_name;
    j["loss"] = m.loss_policy;
    j["prep"] = prep;
    j["verified"] = o.verify_checksums;
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }

  std::printf("%s: %zu shard%s, %s\n", idx.path().c_str(), idx.shards().size(),
              idx.shards().size() == 1 ? "" : "s",
              o.verify_checksums ? "sha256 verified" : "structure checked (--verify also hashes the files)");
  std::printf("tokenizer   %s (sha256 %s), vocab %lld, bos %lld eos %lld pad %lld\n",
              m.tokenizer_name.c_str(), m.tokenizer_sha256.c_str(), (long long)m.vocab_size,
              (long long)m.bos_id, (long long)m.eos_id, (long long)m.pad_id);
  std::printf("made with   template %s, loss %s, formats %s, max_len %s, %s\n", m.template_name.c_str(),
              m.loss_policy.c_str(), m.formats.c_str(),
              m.max_len ? std::to_string(m.max_len).c_str() : "none", m.created_by.c_str());
  std::printf("samples     %lld\ntokens      %lld\ntrained     %lld (%s of tokens are loss targets)\n",
              (long long)s.samples, (long long)s.tokens, (long long)s.trained,
              pct(s.tokens ? double(s.trained) / double(s.tokens) : 0).c_str());
  std::printf("length      min %lld, p50 %lld, p90 %lld, p99 %lld, max %lld, mean %.1f\n",
              (long long)s.min_len, (long long)s.p50, (long long)s.p90, (long long)s.p99,
              (long long)s.max_len, s.mean_len);
  if (prep.contains("input_records") && prep.contains("skipped")) {
    const auto& sk = prep["skipped"];
    std::printf(
        "prep        %lld input records = %lld written + %lld too long + %lld empty + %lld no trainable + "
        "%lld malformed; %lld truncated, %lld UTF-8 repaired\n",
        (long long)prep.value("input_records", 0LL), (long long)prep.value("written", 0LL),
        (long long)sk.value("too_long", 0LL), (long long)sk.value("empty", 0LL),
        (long long)sk.value("no_trainable", 0LL), (long long)sk.value("malformed", 0LL),
        (long long)prep.value("truncated", 0LL), (long long)prep.value("utf8_repaired", 0LL));
  }
  std::printf("\nlength histogram (tokens per sample):\n");
  int64_t peak = 1;
  for (const auto& b : s.histogram) peak = std::max(peak, b.count);
  for (const auto& b : s.histogram) {
    int bar = int((50 * b.count + peak - 1) / peak);
    std::printf("  [%6lld, %6lld)  %9lld  %s\n", (long long)b.lo, (long long)b.hi, (long long)b.count,
                std::string(size_t(bar), '#').c_str());
  }
  std::printf(
      "\nbatching at --tokens-per-batch %lld (%lld sample%s longer than that get a batch of their own):\n",
      (long long)n, (long long)s.over_budget, s.over_budget == 1 ? "" : "s");
  auto row = [](const char* name, const data::BatchWaste& w) {
    std::printf("  %-26s %6s waste  (%lld batches, %lld pad tokens of %lld slots)\n", name,
                pct(w.waste()).c_str(), (long long)w.batches, (long long)w.padding, (long long)w.slots);
  };
  row("packed (hsloth train)", s.packed);
  row("padded (hsloth train)", s.padded);
  row("padded, shuffled", s.padded_shuffled);
  row("padded, length-grouped", s.padded_grouped);
  std::printf(
      "  hsloth train: the micro-batches it makes (its BatchPlan, for --world x --grad-accum micro-batches\n"
      "          per step). packed: samples concatenated into rows of at most N tokens, none split; its\n"
      "          waste is unused budget. padded (train.packing = padded): longest first, rows x longest <= "
      "N.\n"
      "  for comparison, padded loaders hsloth does not run: consecutive samples, each batch grown while\n"
      "          count x longest <= N; shuffled = a seeded random order, length-grouped = ascending length.\n"
      "  waste = padding tokens / token slots of all batches (compute spent on padding).\n");
  if (planned) {
    std::printf(
        "\nplan for %d rank%s x %d micro-batch%s per step (%s, seed %lld), as hsloth train makes it: %lld "
        "micro-batches (padding %s), %lld steps per epoch\n  token imbalance per step (largest rank / mean): "
        "mean %.3f, p90 %.3f, max %.3f\n",
        world, world == 1 ? "" : "s", accum, accum == 1 ? "" : "es", cfg.get("packing").c_str(),
        (long long)cfg.get_int("seed"), (long long)bal.micro_batches, pct(bal.padding).c_str(),
        (long long)bal.steps, bal.mean, bal.p90, bal.max);
    if (bal.mean > 1.05)
      std::printf("  (over 5%%: more micro-batches per step balance better: raise --grad-accum, or lower "
                  "--tokens-per-batch)\n");
    if (list_steps) {
      std::printf("  %6s  %13s  %10s  %10s  %9s\n", "step", "micro-batches", "tokens", "trained",
                  "imbalance");
      for (size_t i = 0; i < bal.per_step.size(); ++i) {
        const auto& st = bal.per_step[i];
        std::printf("  %6zu  %13lld  %10lld  %10lld  %9.4f\n", i + 1, (long long)st.micro_batches,
                    (long long)st.tokens, (long long)st.trained, st.imbalance);
      }
    }
  }
  return 0;
}

hs::cli::Registrar reg{{"inspect", "statistics of a shard folder", schema, run, false}};

}  // namespace
