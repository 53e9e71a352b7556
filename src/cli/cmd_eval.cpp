// `hsloth eval --model M [--adapter A] --data SHARDS [--json]`: token-mean cross-entropy of a model (plus a
// LoRA adapter, unmerged: PEFT's exact arithmetic) over the trained tokens of a shard set (loss_mask = 1:
// token t predicted from tokens < t), its perplexity, and the counts. Samples are length-sorted in the
// shards, so consecutive samples are batched right-padded up to --tokens-per-batch tokens: with causal
// attention a right pad never changes the real tokens, and pads carry no loss, so the result is exact.
// Under mpirun the samples are dealt round-robin to the ranks and the sums are combined in rank order.
// The shards' tokenizer is checked against the model folder's tokenizer.json when it has one.
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/command.h"
#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "data/shard_index.h"
#include "dist/mpi_runtime.h"
#include "io/file.h"
#include "io/sha256.h"
#include "lora/lora.h"
#include "model/model.h"
#include "model/runtime.h"

namespace {
namespace fs = std::filesystem;

hs::config::Schema schema() {
  hs::config::Schema s(
      "eval", "--model DIR [--adapter DIR] --data SHARDS [--json]",
      "Loss (token-mean cross-entropy over the trained tokens), perplexity and token count\n"
      "of a model, optionally with a LoRA adapter, on a shard folder made by `hsloth prep`.\n"
      "Runs under mpirun too (samples split over ranks).");
  s.path("model", "", "model folder (config.json + safetensors)", true);
  s.path("adapter", "", "LoRA adapter folder (PEFT format)");
  s.path("data", "", "shard folder (manifest.json) or one shard file", true);
  s.flag("json", "print one JSON object {loss, ppl, tokens, samples} on stdout");
  s.integer("tokens-per-batch", 4096, "padded tokens per forward pass (batch rows x longest sample)", 1,
            1 << 30);
  s.integer("max-samples", 0, "evaluate only the first N samples (0 = all)", 0, 9.2e18);
  s.str("device", "auto", "auto, cpu, cuda or cuda:N");
  s.str("dtype", "auto", "auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16");
  s.config_file(false);
  return s;
}

int run(const hs::config::Config& cfg) {
  using hs::dist::Mpi;
  const std::string model_dir = cfg.get("model");
  hs::Timer timer;
  at::Device device = hs::model::resolve_device(cfg.get("device"), Mpi::local_rank());
  hs::model::LoadOptions lo{hs::model::resolve_dtype(cfg.get("dtype"), device), device};

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
  hs::data::ShardIndex index = hs::data::ShardIndex::open(cfg.get("data"), opts);
  hs::model::Model model = hs::lora::load_for_inference(model_dir, cfg.get("adapter"), lo, /*merge=*/false);
  const hs::io::HfConfig& hc = model.config();
  if (index.meta().vocab_size > hc.vocab_size)
    throw hs::Error(hs::str("the shards' tokenizer has ", index.meta().vocab_size,
                            " tokens but the model only ", hc.vocab_size))
        .at(cfg.get("data"))
        .hint("evaluate with the model the shards were made for");

  int64_t n = index.num_samples();
  if (cfg.get_int("max-samples") > 0) n = std::min<int64_t>(n, cfg.get_int("max-samples"));
  const int rank = Mpi::rank(), world = Mpi::world();
  std::vector<int64_t> mine;
  for (int64_t i = rank; i < n; i += world) mine.push_back(i);
  const int64_t budget = cfg.get_int("tokens-per-batch");

  at::NoGradGuard no_grad;
  double loss_sum = 0;
  int64_t count = 0;
  hs::Progress progress("eval", int64_t(mine.size()), "samples");
  size_t k = 0;
  while (k < mine.size()) {
    // Samples ascend in length within a shard: take consecutive ones while rows x longest fits.
    std::vector<hs::data::Sample> batch;
    int64_t longest = 0;
    while (k < mine.size()) {
      const int64_t len = index.length(mine[k]);
      const int64_t l = std::max(longest, len);
      if (!batch.empty() && l * int64_t(batch.size() + 1) > budget) break;
      hc.check_sequence_length(len, hs::str(cfg.get("data"), ": sample ", mine[k]));
      batch.push_back(index.read_sample(mine[k]));
      longest = l;
      ++k;
    }
    const int64_t B = int64_t(batch.size());
    at::Tensor ids = at::zeros({B, longest}, at::kLong);
    at::Tensor mask = at::zeros({B, longest}, at::kByte);
    for (int64_t b = 0; b < B; ++b) {
      const auto& s = batch[size_t(b)];
      const int64_t len = int64_t(s.ids.size());
      ids[b].slice(0, 0, len).copy_(at::tensor(std::vector<int64_t>(s.ids.begin(), s.ids.end()), at::kLong));
      std::memcpy(mask[b].data_ptr<uint8_t>(), s.mask.data(), size_t(len));
    }
    hs::model::Inputs in;
    in.input_ids = ids;
    hs::model::ops::LossSum l = model.loss(in, mask);
    loss_sum += l.sum.item<double>();
    count += l.count;
    progress.update(int64_t(k));
  }
  progress.finish();

  // Combine over ranks in rank order (deterministic).
  std::string mine_bytes(sizeof(double) + sizeof(int64_t), '\0');
  std::memcpy(mine_bytes.data(), &loss_sum, sizeof(double));
  std::memcpy(mine_bytes.data() + sizeof(double), &count, sizeof(int64_t));
  double total_sum = 0;
  int64_t total_count = 0;
  for (const std::string& b : Mpi::allgather(mine_bytes)) {
    double s;
    int64_t c;
    std::memcpy(&s, b.data(), sizeof(double));
    std::memcpy(&c, b.data() + sizeof(double), sizeof(int64_t));
    total_sum += s;
    total_count += c;
  }
  if (total_count == 0)
    throw hs::Error("no trained tokens (loss_mask = 1) in the evaluated samples")
        .at(cfg.get("data"))
        .hint("the shards were made with a loss policy that trains nothing, or --max-samples is too small");
  const double loss = total_sum / double(total_count);
  const double ppl = std::exp(loss);
  if (rank == 0) {
    if (cfg.get_bool("json")) {
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
