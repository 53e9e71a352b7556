// `hsloth eval --model M [--adapter A] --data SHARDS [--json]`: token-mean cross-entropy of a model (plus a
// LoRA adapter, unmerged: PEFT's exact arithmetic) over the trained tokens of a shard set (loss_mask = 1:
// token t predicted from tokens < t), its perplexity, and the counts. Batches are the trainer's own
// (train/batches.h): a BatchPlan of --tokens-per-batch micro-batches, packed rows (attention never crosses
// samples) or right-padded rows (pads are never attended to by real tokens and carry no loss), so the
// result is exact either way and equals the trainer's eval on the same shards.
// Under mpirun the micro-batches are dealt round-robin to the ranks and the sums are combined in rank order.
// The shards' tokenizer is checked against the model folder's tokenizer.json when it has one.
// --quant nf4 (or a pre-quantized bnb-4bit folder) evaluates on the NF4 base (hs::quant), the adapter on top.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/model_flags.h"
#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "data/batch_plan.h"
#include "data/shard_index.h"
#include "dist/communicator.h"
#include "dist/mpi_runtime.h"
#include "io/file.h"
#include "io/hf_config.h"
#include "io/sha256.h"
#include "lora/lora.h"
#include "model/model.h"
#include "model/runtime.h"
#include "train/batches.h"

namespace {
namespace fs = std::filesystem;

hs::config::Schema schema() {
  hs::config::Schema s(
      "eval", "--model DIR [--adapter DIR] --data SHARDS [--json]",
      "Loss (token-mean cross-entropy over the trained tokens), perplexity and token count\n"
      "of a model, optionally with a LoRA adapter, on a shard folder made by `hsloth prep`.\n"
      "Runs under mpirun too (samples split over ranks).");
  s.input_path("model", "", "model folder (config.json + safetensors)", true);
  s.input_path("adapter", "", "LoRA adapter folder (PEFT format)");
  s.input_path("data", "", "shard folder (manifest.json) or one shard file", true);
  s.flag("json", "print one JSON object {loss, ppl, tokens, samples} on stdout");
  s.integer("tokens-per-batch", 4096,
            "tokens per forward pass (a packed row, or padded rows x longest sample; a longer sample gets a "
            "pass of its own)",
            1, 1 << 30);
  s.choice("packing", "packed", {"packed", "padded"}, "several samples per row, or one padded sample per row");
  s.integer("max-samples", 0,
            "evaluate N samples spread evenly over the lengths (sample floor(i * total / N) of the length-sorted "
            "shards, i < N), not the N shortest (0 = all)",
            0, 9.2e18);
  hs::cli::add_model_flags(s);
  s.config_file(false);
  return s;
}

// The options of a `hsloth eval` run, read from its config here and nowhere else.
struct Options {
  std::string model, adapter, data;
  bool json = false;
  int64_t tokens_per_batch = 4096, max_samples = 0;
  hs::data::Packing packing = hs::data::Packing::packed;
  hs::cli::ModelFlags load;  // --device, --dtype, --quant
};

Options read_options(const hs::config::Config& cfg) {
  Options o;
  o.model = cfg.get("model");
  o.adapter = cfg.get("adapter");
  o.data = cfg.get("data");
  o.json = cfg.get_bool("json");
  o.tokens_per_batch = cfg.get_int("tokens-per-batch");
  o.max_samples = cfg.get_int("max-samples");
  o.packing = hs::data::parse_packing(cfg.get("packing"));
  o.load = hs::cli::read_model_flags(cfg);
  return o;
}

int run(const hs::config::Config& cfg) {
  using hs::dist::Mpi;
  const Options o = read_options(cfg);
  const std::string& model_dir = o.model;
  hs::Timer timer;
  const hs::model::LoadOptions lo = hs::cli::load_options(o.load, model_dir, Mpi::local_rank());
  const at::Device device = lo.device;

  hs::data::ShardIndex::Options opts;
  fs::path tok = fs::path(model_dir) / "tokenizer.json";
  std::error_code ec;
  if (fs::exists(tok, ec)) {
    opts.expected_tokenizer_sha256 = hs::io::sha256_file(tok.string());
    opts.expected_tokenizer_name = tok.string();
  } else {
    hs::log::warn("no tokenizer.json in ", model_dir,
                  ": cannot check that the shards were made with this model's tokenizer");
  }
  hs::data::ShardIndex index = hs::data::ShardIndex::open(o.data, opts);
  hs::model::Model model = hs::lora::load_for_inference(model_dir, o.adapter, lo, /*merge=*/false);
  const hs::io::HfConfig& hc = model.config();
  if (index.meta().vocab_size > hc.vocab_size)
    throw hs::Error(hs::str("the shards' tokenizer has ", index.meta().vocab_size,
                            " tokens but the model only ", hc.vocab_size))
        .at(o.data)
        .hint("evaluate with the model the shards were made for");

  // The shards are sorted by length, so the first N would be the N shortest: take N spread evenly instead.
  const int64_t total = index.num_samples();
  int64_t n = total;
  if (o.max_samples > 0) n = std::min<int64_t>(n, o.max_samples);
  // The totals are host data: the CPU communicator (local for one rank, MPI for several).
  const std::unique_ptr<hs::dist::Communicator> comm = hs::dist::make_communicator(at::Device(at::kCPU));
  const int rank = comm->rank(), world = comm->world();
  std::vector<int64_t> ids(static_cast<size_t>(n));
  int64_t longest = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = n == total ? i : int64_t((__int128)i * total / n);
    hc.check_sequence_length(index.length(id), hs::str(o.data, ": sample ", id));
    longest = std::max<int64_t>(longest, index.length(id));
    ids[size_t(i)] = id;
  }
  hs::data::PlanOptions po;
  // A sample longer than the budget is evaluated in a batch of its own size.
  po.tokens_per_batch = std::max(o.tokens_per_batch, longest);
  po.packing = o.packing;
  po.shuffle = false;
  hs::data::BatchPlan plan = hs::data::BatchPlan::build(index.lengths(), index.trained(), ids, po);

  hs::Progress progress("eval", hs::train::rank_share(plan, rank, world), "batches");
  model.set_training(false);
  hs::train::LossTotals totals = hs::train::sum_over_ranks(
      *comm, hs::train::eval_loss(model, index, plan, device, rank, world,
                                  [&](int64_t done, int64_t) { progress.update(done); }));
  progress.finish();
  const double total_sum = totals.sum;
  const int64_t total_count = totals.tokens;
  if (total_count == 0)
    throw hs::Error("no trained tokens (loss_mask = 1) in the evaluated samples")
        .at(o.data)
        .hint("the shards were made with a loss policy that trains nothing, or --max-samples is too small");
  const double loss = total_sum / double(total_count);
  const double ppl = std::exp(loss);
  if (rank == 0) {
    if (o.json) {
      nlohmann::ordered_json j;
      j["loss"] = loss;
      j["ppl"] = ppl;
      j["tokens"] = total_count;
      j["samples"] = n;
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("loss %.6f  ppl %.4f  tokens %lld  samples %lld\n", loss, ppl, (long long)total_count,
                  (long long)n);
    }
    std::fflush(stdout);
  }
  hs::log::info("eval: ", n, " samples, ", total_count, " trained tokens, ", world, " rank(s), ",
                hs::format_duration(timer.seconds()));
  return 0;
}

hs::cli::Registrar reg{{"eval", "loss and perplexity of a model (+adapter) on shards", schema, run, true}};

}  // namespace
