// Facts a training job's ranks must share (see agreement.h). Everything here is cheap: small files, the
// safetensors headers and the manifests, so a mismatch is found in seconds, before loading weights.
#include "train/agreement.h"

#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include <ATen/ATen.h>

#include "core/build_info.h"
#include "core/error.h"
#include "data/batch_plan.h"
#include "data/manifest.h"
#include "data/shard_index.h"
#include "dist/mpi_runtime.h"
#include "io/file.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "io/sha256.h"

namespace hs::train {
namespace {

std::string join(const std::string& a, const std::string& b) {
  return (std::filesystem::path(a) / b).string();
}

// config.json key by key ("rope_scaling.factor"); arrays as JSON text.
void flatten(const nlohmann::json& j, const std::string& prefix, const std::string& file,
             std::vector<dist::Fact>& out) {
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      if (prefix.empty() && (k == "_name_or_path" || k == "transformers_version")) continue;  // harmless
      flatten(v, prefix.empty() ? k : prefix + "." + k, file, out);
    }
    return;
  }
  out.push_back(
      {"model", "the model's config.json " + prefix, j.is_string() ? j.get<std::string>() : j.dump(), file});
}

void shard_facts(const std::string& key, const std::string& path, std::vector<dist::Fact>& out) {
  if (io::is_directory(path)) {
    const data::Manifest m = data::Manifest::read(path);
    out.push_back({"data", key + " totals",
                   hs::str(m.samples, " samples, ", m.tokens, " tokens, ", m.trained, " trained, ",
                           m.shards.size(), " shards"),
                   ""});
    out.push_back({"data", key + " tokenizer", m.meta.tokenizer_sha256, ""});
    for (const auto& s : m.shards)
      out.push_back({"data", key + " " + s.file,
                     hs::str(s.samples, " samples, ", s.tokens, " tokens, sha256 ", s.sha256), ""});
  } else {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return;  // the trainer names the missing path itself
    const data::ShardMeta meta = data::read_shard_meta(path);
    std::string sources;
    for (const auto& s : meta.source_sha256) sources += (sources.empty() ? "" : ",") + s;
    out.push_back({"data", key + " file", hs::str(int64_t(st.st_size), " bytes, sources ", sources), ""});
  }
}

}  // namespace

std::vector<dist::Fact> startup_facts(const config::Config& cfg, const TrainOptions& o,
                                      const std::string& device_kind) {
  std::vector<dist::Fact> f;
  f.push_back({"build", "hsloth version", build_info().version, ""});
  f.push_back({"build", "device kind", device_kind, ""});
  // Input paths may differ per rank (node-local copies); their contents are compared below.
  for (const auto& k : cfg.schema().keys()) {
    if (k.name == "model.path" || k.name == "data.train" || k.name == "data.eval") continue;
    f.push_back({"config", k.name, cfg.get(k.name), cfg.origin(k.name)});
  }
  const std::string& model = o.model.path;
  if (io::is_directory(model)) {
    const std::string cj = join(model, "config.json");
    if (io::exists(cj)) {
      nlohmann::json j = io::read_json(
          cj, {"config.json is not valid JSON", "the model folder is damaged; download config.json again"});
      flatten(j, "", "in " + cj, f);
      const auto ck = io::Checkpoint::open(model);
      for (const auto& name : ck.names()) {
        const auto& t = ck.get(name);
        std::string shape;
        for (int64_t d : t.shape) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
        f.push_back(
            {"model", "the model's weight " + name, hs::str(io::dtype_name(t.dtype), " [", shape, "]"), ""});
      }
    }
    const std::string tok = join(model, "tokenizer.json");
    f.push_back({"tokenizer", "the model's tokenizer.json (sha256)",
                 io::exists(tok) ? io::sha256_file(tok) : "none", "in " + tok});
  }
  shard_facts("data.train", o.data.train, f);
  if (!o.data.eval.empty()) shard_facts("data.eval", o.data.eval, f);
  return f;
}

std::vector<dist::Fact> plan_facts(const data::BatchPlan& plan, int64_t total_steps, int64_t start_step,
                                   const at::Tensor& master) {
  std::vector<dist::Fact> f;
  io::Sha256 h;
  for (const auto& mb : plan.micro_batches()) {
    h.update(mb.samples.data(), mb.samples.size() * sizeof(int64_t));
    h.update("|");
  }
  f.push_back({"plan", "optimizer steps", std::to_string(total_steps), ""});
  f.push_back({"plan", "steps per epoch", std::to_string(plan.steps_per_epoch()), ""});
  f.push_back({"plan", "micro-batches", hs::str(plan.micro_batches().size(), " (sha256 ", h.hex(), ")"), ""});
  f.push_back(
      {"resume", "first step", std::to_string(start_step + 1), start_step > 0 ? "resumed" : "fresh start"});
  // Bit patterns of the fp32 master summed as integers (order-independent, exact), as check_params_equal
  // does.
  at::Tensor bits = master.view(at::kInt);
  at::Tensor sums = at::stack({bits.sum(at::kLong), bits.slice(0, 0, bits.numel(), 2).sum(at::kLong)}).cpu();
  f.push_back({"resume", "parameters (checksum)",
               hs::str(sums[0].item<int64_t>(), "/", sums[1].item<int64_t>()), ""});
  return f;
}

void check_startup_agreement(const config::Config& cfg, const TrainOptions& o,
                             const std::string& device_kind) {
  if (!dist::Mpi::active() || dist::Mpi::world() == 1) return;  // nothing to compare with
  dist::check_ranks_agree(startup_facts(cfg, o, device_kind), "at start-up");
}

}  // namespace hs::train
