// Trainer lifecycle (see trainer.h): setup (device, model, trainables, optimizer, data plan, resume) ->
// train loop (stop agreement, micro-batches, gradient sum and all-reduce, clip, AdamW, metrics) -> eval ->
// checkpoint -> final/. Options are typed (options.h); decoding is model/generate, HF export
// model/hf_export, the device table model/runtime, and every cross-rank operation goes through the
// Communicator; stop signals and fault injection are run_control.h's.
#include "train/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "data/batch_plan.h"
#include "data/shard_index.h"
#include "dist/communicator.h"
#include "dist/mpi_runtime.h"
#include "io/file.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "io/sha256.h"
#include "lora/lora.h"
#include "model/device_copy.h"
#include "model/generate.h"
#include "model/hf_export.h"
#include "model/model.h"
#include "model/names.h"
#include "model/runtime.h"
#include "quant/nf4_linear.h"
#include "train/adamw.h"
#include "train/agreement.h"
#include "train/batches.h"
#include "train/checkpoint.h"
#include "train/flat_params.h"
#include "train/grad_buckets.h"
#include "train/grad_ckpt.h"
#include "train/lr_schedule.h"
#include "train/options.h"
#include "train/profile.h"
#include "train/run_control.h"
#include "train/tensorboard.h"
#include "train/zero1.h"

namespace hs::train {
namespace {

std::string fs_name(const std::string& path) { return std::filesystem::path(path).filename().string(); }

std::string join_path(const std::string& a, const std::string& b) {
  return (std::filesystem::path(a) / b).string();
}

}  // namespace

double EvalResult::ppl() const { return std::exp(loss); }

struct Trainer::Impl {
  const TrainOptions opts;
  dist::Communicator& comm;
  int rank = 0, world = 1;
  std::string run_dir;
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;
  bool full = false;
  data::Packing packing = data::Packing::packed;
  std::unique_ptr<model::Model> model;
  std::optional<lora::Adapter> adapter;
  std::vector<at::Tensor> full_params;  // full fine-tuning: handles of the model's tensors
  std::unique_ptr<data::ShardIndex> train_data, eval_data;
  std::optional<data::BatchPlan> plan, eval_plan;
  // The next training micro-batch, collated in the background (batches.h); waited for before evaluate()
  // and exact_match() read shards. Declared after the data it reads: destroyed (joined) before it.
  std::unique_ptr<Prefetcher> prefetch;
  std::unique_ptr<FlatParams> flat;
  std::unique_ptr<AdamW> opt;
  at::Tensor grad_sum;  // fp64 sum of the step's gradients (train.grad_sum), or undefined
  std::unique_ptr<GradBuckets> buckets;  // multi-rank runs with dist.bucket_mb > 0
  std::unique_ptr<Zero1> zero;           // dist.shard_optimizer on several ranks
  LrSchedule sched;
  int64_t total_steps = 0, start_step = 0;
  int64_t last_saved = -1;  // the step of the newest checkpoint on disk (written or resumed from)
  double flops_per_token = 0, peak = 0;
  std::unique_ptr<TensorBoardWriter> tb;
  std::ofstream metrics;

  FaultInjection faults;  // HSLOTH_FAIL_AT (tests and cluster drills)

  Impl(TrainOptions o, dist::Communicator& m)
      : opts(std::move(o)), comm(m), rank(m.rank()), world(m.world()), faults(m.rank()) {}

  void setup();
  void setup_data(const std::string& tokenizer_sha);
  void resume();
  int train_loop();
  EvalResult evaluate(const data::ShardIndex& data, const data::BatchPlan& plan, int64_t done);
  void exact_match(const data::ShardIndex& data, const data::BatchPlan& plan, EvalResult& r, int64_t done);
  void save_checkpoint_now(int64_t step);
  void save_final();
  void log_metrics(const nlohmann::ordered_json& j);
  void check_params_equal(int64_t step);
  void trim_metrics();
  void end_with_error(int64_t done, const std::string& local_error, bool in_eval);
  std::string save_after_error(int64_t step);
  [[noreturn]] void stop_all(Error e) const;
};

Trainer::Trainer(TrainOptions options, dist::Communicator& comm)
    : impl_(std::make_unique<Impl>(std::move(options), comm)) {}
Trainer::~Trainer() = default;

int Trainer::run() {
  try {
    impl_->setup();
    return impl_->train_loop();
  } catch (const c10::OutOfMemoryError& e) {
    throw Error(std::string("out of GPU memory: ") + e.what_without_backtrace())
        .hint(
            "lower train.tokens_per_batch (raise train.grad_accum to keep the global batch), or set "
            "train.grad_ckpt = on");
  }
}

void Trainer::Impl::setup() {
  run_dir = opts.run_dir;
  full = opts.finetune == Finetune::full;
  packing = opts.plan.packing;

  // Device and dtype: one GPU per rank when there is one (node-local rank), else CPU.
  device = dist::rank_device();
  if (device.is_cpu() && std::getenv("OMP_NUM_THREADS") == nullptr) {
    // Ranks on one node share its cores; oversubscribed OpenMP threads spin and crawl.
    int threads =
        std::max(1, int(std::thread::hardware_concurrency()) / std::max(1, dist::Mpi::local_world()));
    at::set_num_threads(threads);
  }
  dtype = model::resolve_dtype(opts.model.dtype, device);  // the same words as eval, generate and merge

  const std::string model_path = opts.model.path;
  if (!io::is_directory(model_path))
    throw Error("model folder not found").at(model_path).hint("model.path is an HF folder with config.json");
  std::string tok = join_path(model_path, "tokenizer.json");
  std::string tokenizer_sha = io::exists(tok) ? io::sha256_file(tok) : "";
  if (tokenizer_sha.empty())
    log::warn("no tokenizer.json in ", model_path, ": cannot check that the shards match it");

  if (rank == 0) {
    io::make_dirs(run_dir);
    if (opts.checkpoint.resume == "off" && io::is_directory(join_path(run_dir, "checkpoints")) &&
        !std::filesystem::is_empty(join_path(run_dir, "checkpoints")))
      throw Error("run.dir already holds checkpoints of an earlier run")
          .at(run_dir)
          .hint("continue it with --train.resume auto, or choose another --run.dir");
    if (!opts.resolved_ini.empty()) {
      io::write_file_atomic(join_path(run_dir, "config.resolved.ini"), opts.resolved_ini);
      log::info("resolved config -> ", join_path(run_dir, "config.resolved.ini"));
    }
  }

  Timer t;
  // QLoRA: the projections NF4 (quantized at load, or read from a pre-quantized folder, whatever finetune
  // says: it is what the folder is); LoRA on top exactly as for `lora`.
  const io::HfConfig base_config = io::load_hf_config(model_path);
  if (full && base_config.quantization.nf4)
    throw Error("finetune = full cannot train a pre-quantized NF4 (bitsandbytes 4-bit) base")
        .at(base_config.source)
        .hint("use finetune = qlora on this folder, or full fine-tuning on the bf16 model");
  const bool nf4 = opts.finetune == Finetune::qlora || base_config.quantization.nf4;
  if (nf4 && opts.finetune == Finetune::lora)
    log::info("finetune = lora on a pre-quantized NF4 base: training QLoRA");
  model = std::make_unique<model::Model>(model::Model::load(
      model_path, quant::nf4_load_options({dtype, device}, base_config, opts.finetune == Finetune::qlora)));
  if (nf4)
    log::info("NF4 base: ", format_bytes(double(quant::nf4_bytes(*model))), " of 4-bit projections on ",
              device.str());
  const uint64_t seed = opts.seed;
  at::manual_seed(seed + uint64_t(rank));  // dropout streams differ per rank
  std::vector<at::Tensor*> slots;
  std::vector<std::string> names;
  if (full) {
    model->set_full_finetune(true);
    for (auto& nt : model->named_parameters()) {
      full_params.push_back(nt.tensor);
      names.push_back(nt.name);
    }
    for (auto& p : full_params) slots.push_back(&p);
  } else {
    adapter.emplace(lora::Adapter::create(*model, opts.lora, seed, at::kFloat));
    for (const auto& e : adapter->entries()) {
      slots.push_back(&e.module->a);
      slots.push_back(&e.module->b);
    }
    for (const auto& nt : adapter->trainable()) names.push_back(nt.name);
  }
  if (opts.dist.shard_optimizer && !full)
    throw Error("dist.shard_optimizer = on shards the optimizer state of full fine-tuning")
        .hint("LoRA and QLoRA state is small: set dist.shard_optimizer = off (or finetune = full)");
  const bool sharded = opts.dist.shard_optimizer && world > 1;
  if (opts.dist.shard_optimizer && !sharded) log::info("dist.shard_optimizer = on with one rank: nothing to shard");
  // ZeRO-1 makes no flat fp32 buffers: the master is this rank's shard (zero1.h).
  flat = std::make_unique<FlatParams>(slots, names, device, /*alias_fp32=*/!full, /*flat_buffers=*/!sharded);
  // Ranks start from identical parameters (rank 0's), whatever their RNG did.
  if (sharded) {
    for (auto& p : full_params) comm.broadcast(p, 0);
  } else {
    comm.broadcast(flat->master(), 0);
    flat->push_params();
  }
  // Gradient sums in fp64: fp32 sums depend on their order, which changes with grad_accum and world size;
  // in fp64 the order matters ~1e-16, so -np 4 and -np 1 x grad_accum 4 agree to fp32 rounding.
  const GradSum gs = opts.optimizer.grad_sum;
  const bool fp64_sum = gs == GradSum::fp64 || (gs == GradSum::auto_ && flat->numel() <= (int64_t(1) << 28));
  if (sharded) {
    zero = std::make_unique<Zero1>(*flat, comm, fp64_sum);
    log::info("ZeRO-1: fp32 master and AdamW moments sharded over ", world, " ranks (",
              format_count(double(zero->shard_numel())), " values each, ", zero->sections(),
              " sections; gradients reduce-scattered after backward, dist.bucket_mb does not apply)");
  }
  model->set_training(true);
  if (opts.model.grad_ckpt != GradCkpt::off) model->set_layer_runner(checkpoint_runner(opts.model.grad_ckpt));
  opt = std::make_unique<AdamW>(flat->master(), opts.optimizer.adamw);
  // ZeRO-1 keeps its own, in its section layout. One micro-batch per step on one rank (-np 1, grad_accum 1) sums
  // one term: the fp32 gradient itself, bit for bit, without the 8 bytes per trained parameter.
  const bool one_term = world == 1 && opts.plan.grad_accum == 1;
  if (fp64_sum && !zero && !one_term)
    grad_sum = at::zeros({flat->numel()}, at::TensorOptions().dtype(at::kDouble).device(device));
  if (world > 1 && opts.dist.bucket_mb > 0 && !zero) {  // ZeRO-1 reduce-scatters after backward
    buckets = std::make_unique<GradBuckets>(*flat, grad_sum, opts.dist.bucket_mb, comm);
    log::info("gradient all-reduce: ", buckets->size(), " bucket(s) of up to ", opts.dist.bucket_mb, " MB",
              comm.overlaps() ? ", overlapped with backward" : "");
  }

  setup_data(tokenizer_sha);

  const auto& mc = model->config();
  // The matmul weights: the projections (dense or NF4) and lm_head (tied or not).
  int64_t linear = mc.vocab_size * mc.hidden_size;
  for (int i = 0; i < model->num_layers(); ++i)
    for (const auto& p : model->layer(i).proj) linear += p->in_features() * p->out_features();
  // Training FLOPs per token: forward 2·P; backward 2·P for activation gradients, +2·P for weight
  // gradients only when the base is trained; LoRA's own matmuls are small and not counted.
  flops_per_token = (full ? 6.0 : 4.0) * double(linear);
  peak = model::peak_bf16_flops(device);  // from the device's SMs, clock and architecture
  log::info("model ", model_path, " (", mc.model_type, ", ", mc.num_hidden_layers, " layers, ",
            format_count(double(linear)), " matmul params) on ", device.str(), " in ",
            dtype == at::kBFloat16 ? "bf16" : "fp32", ", loaded in ", format_duration(t.seconds()));
  log::info(full  ? "full fine-tuning: "
            : nf4 ? "QLoRA (LoRA on the NF4 base): "
                  : "LoRA: ",
            format_count(double(flat->numel())), " trainable parameters",
            full ? "" : hs::str(" (r=", opts.lora.r, ", alpha=", opts.lora.alpha, ")"));
  log::info("communicator: ", comm.name());

  resume();
  // The world-dependent plan and the starting point must be the same on every rank (a different step count
  // would leave one rank waiting in an all-reduce forever).
  if (world > 1)
    dist::check_ranks_agree(
        plan_facts(*plan, total_steps, start_step, zero ? zero->fingerprint() : flat->master()),
        "after planning and resuming");
  if (rank == 0) {
    trim_metrics();
    metrics.open(join_path(run_dir, "metrics.jsonl"), std::ios::app);
    if (!metrics) throw Error("cannot open metrics.jsonl").at(run_dir);
    tb = std::make_unique<TensorBoardWriter>(join_path(run_dir, "tensorboard"));
  }
}

void Trainer::Impl::setup_data(const std::string& tokenizer_sha) {
  data::ShardIndex::Options so;
  so.expected_tokenizer_sha256 = tokenizer_sha;
  so.expected_tokenizer_name = join_path(opts.model.path, "tokenizer.json");
  train_data = std::make_unique<data::ShardIndex>(data::ShardIndex::open(opts.data.train, so));
  const uint64_t seed = opts.seed;
  std::vector<int64_t> train_ids(size_t(train_data->num_samples()));
  for (size_t i = 0; i < train_ids.size(); ++i) train_ids[i] = int64_t(i);
  std::vector<int64_t> eval_ids;
  if (!opts.data.eval.empty()) {
    eval_data = std::make_unique<data::ShardIndex>(data::ShardIndex::open(opts.data.eval, so));
    eval_ids.resize(size_t(eval_data->num_samples()));
    for (size_t i = 0; i < eval_ids.size(); ++i) eval_ids[i] = int64_t(i);
  } else if (opts.data.eval_fraction > 0) {
    // A seeded held-out subset of train.
    std::vector<int64_t> perm = train_ids;
    data::portable_shuffle(perm, seed ^ 0x5eedull);
    size_t n_eval = size_t(std::llround(opts.data.eval_fraction * double(perm.size())));
    eval_ids.assign(perm.begin(), perm.begin() + std::ptrdiff_t(n_eval));
    std::sort(eval_ids.begin(), eval_ids.end());
    train_ids.assign(perm.begin() + std::ptrdiff_t(n_eval), perm.end());
    std::sort(train_ids.begin(), train_ids.end());
  }
  data::PlanOptions po;
  po.tokens_per_batch = opts.plan.tokens_per_batch;
  po.packing = packing;
  po.seed = seed;
  po.world_size = world;
  po.grad_accum = opts.plan.grad_accum;
  // The model cannot attend beyond max_position_embeddings: refuse longer samples before any step.
  const int64_t max_pos = model->config().max_position_embeddings;
  auto check_positions = [&](const data::ShardIndex& d, const std::vector<int64_t>& ids, const char* key) {
    int64_t longest = -1, count = 0;
    for (int64_t id : ids)
      if (d.length(id) > max_pos) {
        ++count;
        if (longest < 0 || d.length(id) > d.length(longest)) longest = id;
      }
    if (max_pos > 0 && count > 0)
      throw Error(hs::str(count, " sample(s) in ", key,
                          " are longer than the model's max_position_embeddings = ", max_pos,
                          " (longest: sample ", longest, " has ", d.length(longest), " tokens)"))
          .at(d.path())
          .hint(hs::str("re-run hsloth prep with --max-len ", max_pos, " (--too-long drop|truncate)"));
  };
  check_positions(*train_data, train_ids, "data.train");
  if (!eval_ids.empty())
    check_positions(eval_data ? *eval_data : *train_data, eval_ids, eval_data ? "data.eval" : "data.train");
  plan.emplace(data::BatchPlan::build(train_data->lengths(), train_data->trained(), train_ids, po));
  if (!eval_ids.empty()) {
    const data::ShardIndex& ed = eval_data ? *eval_data : *train_data;
    data::PlanOptions eo = po;
    eo.shuffle = false;
    eo.world_size = 1;
    eo.grad_accum = 1;
    eval_plan.emplace(data::BatchPlan::build(ed.lengths(), ed.trained(), eval_ids, eo));
  }
  const int64_t spe = plan->steps_per_epoch();
  const ScheduleOptions& sc = opts.schedule;
  total_steps =
      sc.max_steps > 0 ? sc.max_steps : std::max<int64_t>(1, int64_t(std::ceil(sc.epochs * double(spe))));
  check_warmup(sc, total_steps);
  sched = LrSchedule{sc.kind, sc.lr, sc.warmup_steps, total_steps};
  const double waste = plan->padding_fraction();  // the number `hsloth inspect` prints for this plan
  log::info("data: ", plan->num_samples(), " samples, ", format_count(double(plan->num_trained())),
            " trained tokens, ", plan->micro_batches().size(), " micro-batches (", packing_name(packing),
            ", padding ", hs::str(std::round(waste * 1000) / 10), "%), ", spe, " steps/epoch, ", total_steps,
            " steps; eval: ", eval_ids.size(), " samples");
}

void Trainer::Impl::resume() {
  const std::string& mode = opts.checkpoint.resume;
  std::string dir;
  if (mode == "off") return;
  if (mode == "auto") {
    // No checkpoint at all (a new run.dir, or a job requeued before its first checkpoint): start fresh.
    // Checkpoints that are all damaged, or a finished run without checkpoints: an error, never a fresh start
    // that would overwrite final/.
    CheckpointScan scan = scan_checkpoints(run_dir);
    if (!scan.latest) {
      const std::string ckdir = join_path(run_dir, "checkpoints");
      if (!scan.damaged.empty()) {
        std::string list;
        for (const auto& [d, why] : scan.damaged) list += "\n    " + fs_name(d) + ": " + why;
        throw Error(hs::str("resume = auto found no valid checkpoint: ", scan.damaged.size(),
                            " checkpoint(s), all damaged:", list))
            .at(ckdir)
            .hint(
                "restore a checkpoint from a backup and resume again, or start over with --train.resume off "
                "and a new --run.dir (the checkpoints and final/ were left as they are)");
      }
      if (io::exists(join_path(run_dir, "final")))
        throw Error(
            "resume = auto found no checkpoint, but run.dir holds the outputs of a finished run (final/)")
            .at(run_dir)
            .hint(
                "it would be overwritten by a fresh start: choose a new --run.dir (with --train.resume off)");
      log::info("resume = auto: no checkpoint in ", ckdir, ", starting fresh");
      return;
    }
    dir = *scan.latest;
  } else {
    dir = mode;
  }
  // ZeRO-1: this rank's values only (the file is mapped: no rank holds the whole state).
  TrainState st = zero ? load_checkpoint_part(dir, zero->my_ranges()) : load_checkpoint(dir);
  if (st.flat_numel != flat->numel())
    throw Error(hs::str("checkpoint has ", st.flat_numel, " trainable values, this run ", flat->numel()))
        .at(dir)
        .hint(
            "resume with the model and LoRA settings (lora.r, lora.targets, finetune) of the run that wrote "
            "it");
  if (st.seed != opts.seed)
    log::warn("checkpoint was written with train.seed ", st.seed, "; this run uses ", opts.seed,
              ": the data order after resuming differs from the original run's");
  if (st.world_size != world)
    log::info("resuming a ", st.world_size, "-rank checkpoint on ", world,
              " ranks (the data cursor is global)");
  if (zero) {  // this rank's shard of the whole state (written by any world size, sharded or not)
    {
      at::NoGradGuard g;
      flat->master().copy_(zero->my_part(st.master, flat->master()));
    }
    opt->load_state(st.step, zero->my_part(st.exp_avg, flat->master()),
                    zero->my_part(st.exp_avg_sq, flat->master()));
    zero->all_gather_params();
  } else {
    {
      at::NoGradGuard g;
      flat->master().copy_(st.master);
    }
    flat->push_params();
    opt->load_state(st.step, st.exp_avg.to(device), st.exp_avg_sq.to(device));
  }
  if (st.rng_cpu.defined() && st.world_size == world) {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    gen.set_state(st.rng_cpu);
  }
  start_step = st.step;
  last_saved = st.step;
  log::info("resumed from ", dir, " at step ", start_step);
}

// After a resume at step S, metrics.jsonl keeps the records of steps up to S only (a killed run may have
// logged steps past its last checkpoint, and they run again), so that every step is in the file once. The
// eval record at S goes too when S is the last step: the final eval runs again.
void Trainer::Impl::trim_metrics() {
  const std::string path = join_path(run_dir, "metrics.jsonl");
  if (start_step == 0 || !io::exists(path)) return;
  std::string kept;
  int64_t dropped = 0;
  std::istringstream in(io::read_file(path));
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    bool keep = j.is_object() && j.contains("step") && j["step"].is_number_integer();
    if (keep) {
      const int64_t step = j["step"].get<int64_t>();
      keep = step < start_step || (step == start_step && !(j.contains("eval_loss") && step == total_steps));
    }
    if (keep)
      kept += line + "\n";
    else
      ++dropped;  // a later step, or a line torn by a kill
  }
  if (dropped > 0) {
    io::write_file_atomic(path, kept);
    log::info("metrics.jsonl: dropped ", dropped, " record(s) after step ", start_step,
              " (they are logged again)");
  }
}

// Ends the job with `e` from rank 0 alone: the other ranks wait for its MPI_Abort (the top-level handler), so
// the error is printed once, and no rank ends the job before rank 0 has printed it.
void Trainer::Impl::stop_all(Error e) const {
  if (rank != 0 && world > 1) {
    comm.barrier();  // rank 0 never arrives: it aborts the job
    throw Error("stopped (rank 0 reports why)");
  }
  throw std::move(e);
}

// Saves the last completed step `step` before an error ends the run (collective); returns what to tell.
std::string Trainer::Impl::save_after_error(int64_t step) {
  const std::string where = join_path(join_path(run_dir, "checkpoints"), hs::str("step-", step));
  if (step == 0) return "no step was completed, so there is nothing to save";
  if (last_saved == step) return hs::str("step ", step, " is saved in ", where);
  try {
    save_checkpoint_now(step);
  } catch (const Error& e) {
    return hs::str("saving step ", step, " failed too: ", e.message(),
                   e.where().empty() ? "" : " (" + e.where() + ")");
  }
  return hs::str("saved step ", step, " to ", where);
}

// Agrees on an error of some rank in the step after `done` steps (or in the eval after them) and ends the
// run, the last completed step saved; returns when no rank failed. Collective: in multi-rank runs every rank
// calls it every step and eval, before the collectives that a failed rank would miss.
void Trainer::Impl::end_with_error(int64_t done, const std::string& local_error, bool in_eval) {
  at::Tensor failed = at::tensor({local_error.empty() ? 0.0 : 1.0}, at::kDouble);
  comm.all_reduce_sum(failed);
  if (failed.item<double>() == 0) return;
  const auto errors = comm.gather_bytes(local_error, 0);
  Error e("");
  int bad = -1;
  for (size_t r = 0; r < errors.size() && bad < 0; ++r)
    if (!errors[r].empty()) bad = int(r);
  if (rank == 0) e = unpack_error(errors[size_t(bad)]);
  const std::string saved = save_after_error(done);  // the state is that of step `done`: nothing was applied
  if (rank != 0) stop_all(e);
  Error out(hs::str(e.message(), in_eval ? " (in the eval after step " : " (in step ",
                    in_eval ? done : done + 1, world > 1 ? hs::str(", on rank ", bad) : "", ")\n  ", saved));
  if (!e.where().empty()) out.at(e.where());
  out.hint((e.hint_text().empty() ? "fix the cause" : e.hint_text()) +
           "; then resume with --train.resume auto");
  stop_all(std::move(out));
}

void Trainer::Impl::log_metrics(const nlohmann::ordered_json& j) {
  if (rank != 0) return;
  metrics << j.dump() << "\n";
  metrics.flush();
}

void Trainer::Impl::save_checkpoint_now(int64_t step) {
  at::Tensor master, exp_avg, exp_avg_sq;  // ZeRO-1: the whole state, gathered to rank 0 (collective)
  if (zero) {
    master = zero->gather_full(flat->master());
    exp_avg = zero->gather_full(opt->exp_avg());
    exp_avg_sq = zero->gather_full(opt->exp_avg_sq());
  }
  if (rank != 0) {
    comm.barrier();
    last_saved = step;
    return;
  }
  Timer t;
  TrainState st;
  st.step = step;
  st.world_size = world;
  st.seed = opts.seed;
  st.config_ini = opts.resolved_ini;
  st.master = zero ? master : flat->master().to(at::kCPU).contiguous();
  st.exp_avg = zero ? exp_avg : opt->exp_avg().to(at::kCPU).contiguous();
  st.exp_avg_sq = zero ? exp_avg_sq : opt->exp_avg_sq().to(at::kCPU).contiguous();
  st.rng_cpu = at::detail::getDefaultCPUGenerator().get_state();
  st.extra["finetune"] = full ? "full" : opts.finetune == Finetune::qlora ? "qlora" : "lora";
  std::string dir = save_checkpoint(
      run_dir, st,
      [&](const std::string& d) {
        if (adapter) adapter->save(d);
      },
      opts.checkpoint.keep);
  log::info("checkpoint ", dir, " (", format_duration(t.seconds()), ")");
  last_saved = step;
  comm.barrier();
}

void Trainer::Impl::save_final() {
  if (rank != 0) return;
  std::string dir = join_path(run_dir, "final");
  if (adapter) {
    adapter->save(dir);
    log::info("adapter (PEFT format) -> ", dir);
  } else {
    model::save_hf_folder(*model, opts.model.path, dir);  // weights in the run dtype + base config/tokenizer
    log::info("full model (HF folder) -> ", dir);
  }
}

EvalResult Trainer::Impl::evaluate(const data::ShardIndex& data, const data::BatchPlan& ep, int64_t done) {
  if (prefetch) prefetch->wait();  // one reader of the shard files at a time
  model->set_training(false);
  at::NoGradGuard no_grad;  // also for exact-match's decoding
  // An eval sample that cannot be read ends the run as one of a training step does: last step saved.
  LossTotals mine;
  std::string local_error;
  try {
    if (faults.at(done - 1, "eval"))
      throw Error("injected data error: an eval sample cannot be read").hint("HSLOTH_FAIL_AT is set");
    mine = eval_loss(*model, data, ep, device, rank, world);
  } catch (const Error& e) {
    local_error = pack_error(e);
  }
  if (world > 1 || !local_error.empty()) end_with_error(done, local_error, /*in_eval=*/true);
  LossTotals t = sum_over_ranks(comm, mine);
  EvalResult r;
  r.tokens = t.tokens;
  r.samples = t.samples;
  r.loss = r.tokens > 0 ? t.sum / double(r.tokens) : 0;
  if (opts.eval.exact_match) exact_match(data, ep, r, done);
  model->set_training(true);
  return r;
}

// Greedy-decodes the last trained span of each eval sample from the tokens before it and counts exact
// matches: the skill of a response-masked task, measured without a tokenizer.
void Trainer::Impl::exact_match(const data::ShardIndex& data, const data::BatchPlan& ep, EvalResult& r,
                                int64_t done) {
  if (prefetch) prefetch->wait();  // one reader of the shard files at a time
  std::vector<int64_t> ids;
  for (const auto& mb : ep.micro_batches()) ids.insert(ids.end(), mb.samples.begin(), mb.samples.end());
  std::sort(ids.begin(), ids.end());
  const int64_t limit = opts.eval.max_samples;
  if (limit > 0 && int64_t(ids.size()) > limit) ids.resize(size_t(limit));
  int64_t exact = 0, total = 0;
  std::string local_error;
  try {
    for (size_t i = size_t(rank); i < ids.size(); i += size_t(world)) {
      data::Sample s = data.read_sample(ids[i]);
      int64_t end = int64_t(s.mask.size());
      while (end > 0 && !s.mask[size_t(end - 1)]) --end;
      int64_t begin = end;
      while (begin > 1 && s.mask[size_t(begin - 1)]) --begin;
      if (end == 0 || begin >= end) continue;
      ++total;
      const std::vector<int64_t> prefix(s.ids.begin(), s.ids.begin() + begin),
          span(s.ids.begin() + begin, s.ids.begin() + end);
      const bool ok = model::greedy_reproduces(*model, prefix, span, device);
      exact += ok ? 1 : 0;
    }
  } catch (const Error& e) {
    local_error = pack_error(e);
  }
  if (world > 1 || !local_error.empty()) end_with_error(done, local_error, /*in_eval=*/true);
  at::Tensor agg = at::tensor({double(exact), double(total)}, at::kDouble);
  comm.all_reduce_sum(agg);
  r.exact = int64_t(agg[0].item<double>());
  r.exact_total = int64_t(agg[1].item<double>());
}

// Ranks must hold bit-identical parameters. Exact and order-independent: the 32-bit patterns of the fp32
// master copy summed as integers (once over all, once over every other element, so that swapped values
// show too), on the device, then compared across ranks over MPI: two int64 per rank.
void Trainer::Impl::check_params_equal(int64_t step) {
  // ZeRO-1: the all-gathered weights (each rank's master is its own shard).
  const at::Tensor m = zero ? zero->fingerprint() : flat->master();
  HS_CHECK(m.scalar_type() == at::kFloat, "master parameters are float32");
  at::Tensor bits = m.view(at::kInt);
  at::Tensor sums = at::stack({bits.sum(at::kLong), bits.slice(0, 0, bits.numel(), 2).sum(at::kLong)}).cpu();
  std::string mine(reinterpret_cast<const char*>(sums.data_ptr<int64_t>()), 2 * sizeof(int64_t));
  auto all = comm.all_gather_bytes(mine);
  std::vector<int> differ;
  for (size_t r = 1; r < all.size(); ++r)
    if (all[r] != all[0]) differ.push_back(int(r));
  if (!differ.empty()) {
    std::string list;
    for (int r : differ) list += (list.empty() ? "" : ", ") + std::to_string(r);
    throw Error(hs::str("parameters differ between ranks after step ", step, ": rank(s) ", list,
                        " disagree with rank 0"))
        .hint("a rank computed different gradients or skipped an update (mixed builds or GPUs, or a bug); "
              "resume from the last checkpoint (--train.resume auto), whose parameters come from rank 0");
  }
}

int Trainer::Impl::train_loop() {
  const int64_t log_every = opts.log.every, eval_every = opts.eval.every, ckpt_every = opts.checkpoint.every,
                check_every = opts.dist.check_every;
  const double max_norm = opts.optimizer.max_grad_norm;
  auto run_eval = [&](int64_t step, const char* when) {
    if (!eval_plan) return;
    const data::ShardIndex& ed = eval_data ? *eval_data : *train_data;
    Timer t;
    EvalResult r = evaluate(ed, *eval_plan, step);
    std::string em = r.exact_total > 0
                         ? hs::str(" | exact-match ", r.exact, "/", r.exact_total, " (",
                                   std::round(1000.0 * double(r.exact) / double(r.exact_total)) / 10, "%)")
                         : "";
    log::info("eval (", when, ") step ", step, " | loss ", r.loss, " | ppl ", r.ppl(), " | ", r.tokens,
              " tokens", em, " | ", format_duration(t.seconds()));
    nlohmann::ordered_json j{{"step", step},
                             {"eval_loss", r.loss},
                             {"eval_ppl", r.ppl()},
                             {"eval_tokens", r.tokens},
                             {"eval_samples", r.samples}};
    if (r.exact_total > 0) j["exact_match"] = double(r.exact) / double(r.exact_total);
    log_metrics(j);
    if (tb) {
      std::vector<std::pair<std::string, double>> s{{"eval/loss", r.loss}, {"eval/ppl", r.ppl()}};
      if (r.exact_total > 0) s.push_back({"eval/exact_match", double(r.exact) / double(r.exact_total)});
      tb->scalars(step, s);
    }
  };

  StepProfiler profiler(rank, run_dir, device, start_step, total_steps);  // HSLOTH_PROFILE_STEP (profile.h)
  // Micro-batch `i` of `step` as a load for the prefetcher: the shard reads only (the plan's caches stay on
  // this thread). HSLOTH_FAIL_AT's data fault is thrown where an unreadable first sample would be.
  auto data_fault = [this](int64_t step) {
    if (faults.at(step, "data"))
      throw Error(hs::str("injected data error: a sample cannot be read"))
          .at(opts.data.train)
          .hint("HSLOTH_FAIL_AT is set");
  };
  auto batch_load = [this, data_fault](int64_t step, int64_t i,
                                       const data::MicroBatch& mb) -> Prefetcher::Load {
    return [this, data_fault, step, i, m = &mb] {  // mb: an element of the plan, which outlives the load
      if (i == 0) data_fault(step);
      return collate(*train_data, *m, packing);
    };
  };
  // HS_SYNC_INPUTS=1: no background collation either (today's order, for A/B).
  prefetch = std::make_unique<Prefetcher>(!model::sync_inputs());
  if (start_step == 0) run_eval(0, "before training");
  Timer run_timer, window;
  int64_t window_tokens = 0, window_trained = 0;
  double imbalance_sum = 0;
  for (int64_t step = start_step; step < total_steps; ++step) {
    profiler.begin(step);
    // Stop requests are agreed on by all ranks so that every rank checkpoints at the same step.
    at::Tensor stop = at::tensor({stop_requested() ? 1.0 : 0.0}, at::kDouble);
    comm.all_reduce_sum(stop);
    if (stop.item<double>() > 0) {
      log::warn("stop requested (signal): checkpointing at step ", step, " and exiting with code ",
                kExitInterrupted, "; resume with --train.resume auto");
      save_checkpoint_now(step);
      return kExitInterrupted;
    }
    note_step(step + 1);
    faults.fail_if_planned(step);
    const int64_t step_trained = plan->step_trained(step);
    flat->zero_grad();
    if (grad_sum.defined()) grad_sum.zero_();
    at::Tensor loss_sum = at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(device));
    int64_t counted = 0;
    // Errors here leave the parameters and optimizer as step `step` left them: they are agreed on by all
    // ranks before the all-reduce is waited for (on GPUs the buckets of the last micro-batch have started;
    // a failed step never waits for them), and the last completed step is saved (end_with_error).
    std::string local_error;
    bool armed = false;  // this rank's buckets gathered the step's gradients
    try {
      const auto step_batches = plan->step_batches(step, rank);
      if (step_batches.empty()) data_fault(step);  // else thrown by the first batch's load
      for (size_t i = 0; i < step_batches.size(); ++i) {
        const auto& mb = plan->micro_batches()[size_t(step_batches[i])];
        const bool bucketed = buckets && i + 1 == step_batches.size();  // the step's last micro-batch
        armed = armed || bucketed;
        // Host tensors: the model checks them on the host and copies them without a sync (device_copy.h).
        Batch b = prefetch->take(step, int64_t(i), batch_load(step, int64_t(i), mb));
        // The next micro-batch (this step's, or the next step's first) is read while this one runs.
        if (i + 1 < step_batches.size()) {
          const auto& next = plan->micro_batches()[size_t(step_batches[i + 1])];
          prefetch->start(step, int64_t(i + 1), batch_load(step, int64_t(i + 1), next));
        } else if (prefetch->background() && step + 1 < total_steps) {
          const auto following = plan->step_batches(step + 1, rank);
          if (!following.empty()) {
            const auto& next = plan->micro_batches()[size_t(following[0])];
            prefetch->start(step + 1, 0, batch_load(step + 1, 0, next));
          }
        }
        auto ls = model->loss(b.inputs, b.mask);
        if (ls.count != mb.trained)
          throw Error(
              hs::str("micro-batch has ", ls.count, " trained targets, the shard index says ", mb.trained))
              .at(opts.data.train)
              .hint("the shards are inconsistent; re-run hsloth prep");
        if (bucketed) buckets->arm();
        (ls.sum / double(std::max<int64_t>(1, step_trained))).backward();
        clear_checkpoint_calls();
        loss_sum += ls.sum.detach().to(at::kDouble);
        counted += ls.count;
        if (bucketed) {
          buckets->flush();  // the buckets gathered (and summed into grad_sum) and, on GPUs, started
        } else if (zero) {
          if (zero->fp64_sum()) {
            zero->accumulate();
            flat->zero_grad();
          }
        } else if (grad_sum.defined()) {  // each micro-batch's fp32 gradient goes into the fp64 sum
          flat->gather_grads();
          grad_sum.add_(flat->grad());
          flat->zero_grad();
        }
      }
      if (faults.at(step, "nan")) loss_sum += std::nan("");
    } catch (const Error& e) {
      local_error = pack_error(e);
    } catch (const c10::OutOfMemoryError& e) {
      local_error =
          pack_error(Error(std::string("out of GPU memory: ") + e.what_without_backtrace())
                         .hint("lower train.tokens_per_batch (raise train.grad_accum to keep the global "
                               "batch), or set train.grad_ckpt = on"));
    }
    if (world > 1 || !local_error.empty()) end_with_error(step, local_error, /*in_eval=*/false);
    if (zero) {
      zero->reduce_scatter();  // this rank's shard of the reduced gradient
    } else if (buckets) {
      // What is not reduced yet (everything on CPU) is reduced now, bucket by bucket; then all are waited
      // for.
      if (!armed && !grad_sum.defined()) flat->gather_grads();
      buckets->finish();
      if (grad_sum.defined()) flat->grad().copy_(grad_sum);  // rounded to fp32 once
    } else if (grad_sum.defined()) {
      comm.all_reduce_sum(grad_sum);
      flat->grad().copy_(grad_sum);  // rounded to fp32 once
    } else {
      flat->gather_grads();
      comm.all_reduce_sum(flat->grad());
    }
    at::Tensor stats = at::stack({loss_sum.to(at::kCPU), at::scalar_tensor(double(counted), at::kDouble)});
    comm.all_reduce_sum(stats);
    const double loss = stats[0].item<double>() / std::max(1.0, stats[1].item<double>());
    // The global norm, in fp64 by fixed chunks: the same bits with and without ZeRO-1's shards.
    at::Tensor& grad = zero ? zero->grad_shard() : flat->grad();
    const double gnorm = zero ? zero->grad_norm() : chunked_grad_norm(grad, norm_chunk(flat->numel()));
    if (!std::isfinite(loss) || !std::isfinite(gnorm)) {
      // Every rank sees the same reduced numbers: all save (collectively) and stop together.
      const std::string saved = save_after_error(step);
      stop_all(
          Error(hs::str("non-finite ", std::isfinite(loss) ? "gradient norm" : "loss", " at step ", step + 1,
                        " (loss ", loss, ", grad-norm ", gnorm, "); the update was not applied\n  ", saved))
              .hint("lower train.lr or raise train.warmup_steps, then resume with --train.resume auto (or "
                    "start over with --train.resume off and a new --run.dir)"));
    }
    if (max_norm > 0) {
      const double coef = std::min(1.0, max_norm / (gnorm + 1e-6));  // torch.nn.utils.clip_grad_norm_
      if (coef < 1.0) grad.mul_(coef);
    }
    const double lr = sched.lr(step);
    profiler.phase("optimizer");
    opt->step(grad, lr);
    if (zero)
      zero->all_gather_params();
    else
      flat->push_params();
    profiler.end(step);

    const data::StepStats st = plan->step_stats(step);  // the numbers `hsloth inspect --steps` prints
    const int64_t step_tokens = st.tokens;
    const double imbalance = st.imbalance;
    imbalance_sum += imbalance;
    window_tokens += step_tokens;
    window_trained += step_trained;
    const int64_t done = step + 1;
    if (done % log_every == 0 || done == total_steps) {
      const double secs = window.seconds();
      const double tps = double(window_tokens) / secs, ttps = double(window_trained) / secs;
      const double eta = run_timer.seconds() / double(done - start_step) * double(total_steps - done);
      const double mem = model::peak_memory_bytes(device);
      std::string mfu;
      double mfu_v = 0;
      if (peak > 0) {
        mfu_v = flops_per_token * tps / (peak * world);
        mfu = hs::str(" | MFU ", std::round(mfu_v * 1000) / 10, "%");
      }
      log::info("step ", done, "/", total_steps, " | loss ", loss, " | lr ", lr, " | grad-norm ", gnorm,
                " | ", format_count(tps), " tok/s | ", format_count(ttps), " trained tok/s", mfu,
                " | peak mem ", format_bytes(mem), " | ETA ", format_duration(eta));
      nlohmann::ordered_json j{{"step", done},
                               {"epoch", double(done) / double(plan->steps_per_epoch())},
                               {"loss", loss},
                               {"lr", lr},
                               {"grad_norm", gnorm},
                               {"tokens", step_tokens},
                               {"trained_tokens", step_trained},
                               {"tokens_per_s", tps},
                               {"trained_tokens_per_s", ttps},
                               {"imbalance", imbalance},
                               {"peak_mem_bytes", mem},
                               {"elapsed_s", run_timer.seconds()}};
      if (peak > 0) j["mfu"] = mfu_v;
      log_metrics(j);
      if (tb)
        tb->scalars(done, {{"train/loss", loss},
                           {"train/lr", lr},
                           {"train/grad_norm", gnorm},
                           {"train/tokens_per_s", tps},
                           {"train/trained_tokens_per_s", ttps}});
      window.reset();
      window_tokens = window_trained = 0;
    }
    if (world > 1 && check_every > 0 && (done % check_every == 0 || done == total_steps))
      check_params_equal(done);
    if (eval_every > 0 && done % eval_every == 0 && done != total_steps) run_eval(done, "periodic");
    if (ckpt_every > 0 && done % ckpt_every == 0 && done != total_steps) save_checkpoint_now(done);
  }
  run_eval(total_steps, "final");
  save_checkpoint_now(total_steps);
  save_final();
  log::info("done: ", total_steps - start_step, " steps in ", format_duration(run_timer.seconds()),
            ", mean rank imbalance ", imbalance_sum / double(std::max<int64_t>(1, total_steps - start_step)),
            "; outputs in ", run_dir);
  return 0;
}

}  // namespace hs::train
