// `hsloth plan`: a run's peak GPU memory and speed, predicted before it starts from what the run is made of:
// the model's config.json (shapes, no weights), the training options (the same typed values `hsloth train`
// reads) and the shard index (sample lengths only, planned into micro-batches by the trainer's BatchPlan).
//
// Memory is a sum of named terms, each a count times a width times bytes, as the code keeps them: the weights
// (bf16, or NF4 as quant::Nf4Tensor::bytes counts them), the trainable state (fp32 masters, the flat fp32
// gradient, AdamW's two moments, the fp64 gradient sum when train.grad_sum makes one; full fine-tuning adds
// bf16 .grad tensors), the activations one decoder layer saves for its backward on the CUDA fast path
// (model/ops_cuda.cpp, model/model.cpp) times the layers the checkpointing mode keeps (train/grad_ckpt.cpp),
// and the transients of the loss (fused head + cross-entropy in chunks of <= 2^27 logits), of a layer's
// backward and of the optimizer step. The peak is the largest of the phases (end of forward, backward of the
// last layer, optimizer step): it is what the trainer reports as peak_mem_bytes (the caching allocator's
// peak allocated); the GPU also needs the CUDA context and allocator slack (`overhead`).
//
// Time per micro-batch: GEMM FLOPs and attention FLOPs at calibrated fractions of the GPU's peak, and the
// bandwidth-bound work (the LoRA branch, the fused elementwise kernels, the loss) as bytes at calibrated
// multiples over the HBM bandwidth (plan/gpus.h holds the numbers and their sources). Per step: the slowest
// rank's micro-batches, the gradient all-reduce (NCCL ring) and the optimizer. The FLOPs per token behind MFU
// are the trainer's: (full ? 6 : 4) x matmul parameters.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "data/batch_plan.h"
#include "io/hf_config.h"
#include "model/names.h"
#include "plan/gpus.h"

namespace hs::plan {

enum class Finetune { lora, qlora, full };
enum class Ckpt { off, on, offload };
enum class GradSum { auto_, fp64, fp32 };

const char* finetune_name(Finetune f);
const char* ckpt_name(Ckpt c);

// What a run is, in the words of `hsloth train`'s options (train::TrainOptions; the CLI converts).
struct RunSpec {
  Finetune finetune = Finetune::lora;
  int64_t lora_r = 16;
  std::vector<model::Proj> lora_targets{model::kAllProjs.begin(), model::kAllProjs.end()};
  Ckpt grad_ckpt = Ckpt::off;
  int64_t tokens_per_batch = 8192;
  int grad_accum = 1;
  data::Packing packing = data::Packing::packed;
  GradSum grad_sum = GradSum::auto_;
  int world = 1;
  bool shard_optimizer = false;  // dist.shard_optimizer: ZeRO-1 (full fine-tuning on several ranks)
  double bucket_mb = 25;         // dist.bucket_mb: all-reduce in buckets overlapped with backward (0: one)
  // Values AdamW's step updates at a time (train::AdamW::kStepChunk; bounds its temporaries). 0: the whole
  // buffer at once, as AdamW stepped before session 5 (the runs of plan_accuracy_h100.json were measured so).
  int64_t adamw_step_chunk = int64_t(1) << 26;
  uint64_t seed = 42;
  int64_t max_steps = 0;  // 0: `epochs` epochs
  double epochs = 1;
};

// The shard index, lengths only (data::ShardIndex::lengths() / trained()).
struct Samples {
  std::vector<int32_t> lengths, trained;
  std::vector<int64_t> ids;  // the training samples (global ids); empty: all
  std::string path;          // for messages
};

// One named amount: bytes (memory) or seconds (time), and how it was counted.
struct Term {
  std::string name;
  double value = 0;
  std::string formula;  // "16384 tok x 2048 x 2 B"
};

double sum(const std::vector<Term>& terms);

struct Memory {
  std::vector<Term> states;  // weights and trainable state: held for the whole run
  std::vector<Term> layer;   // what one decoder layer saves for its backward (no checkpointing)
  std::vector<Term> kept;    // activations held at the end of the forward (per the checkpointing mode)
  std::vector<Term> loss;    // the forward's loss stage on top of `kept`
  std::vector<Term>
      loss_backward;            // full fine-tuning: the loss's backward on top of `kept` (lm_head gradient)
  std::vector<Term> backward;   // the backward of the last layer on top of `kept` (recomputation included)
  std::vector<Term> optimizer;  // the optimizer step on top of `states`
  std::vector<Term> setup;      // full fine-tuning's start-up, next to the weights (the fp32 buffers made)
  std::vector<Term> overhead;   // CUDA context, allocator slack: what the GPU needs beyond the peak
  double peak = 0;              // predicted peak allocated bytes (metrics.jsonl's peak_mem_bytes)
  std::string peak_phase;       // "end of forward (loss)" | "backward" | "optimizer step"
  double needed = 0;            // peak + overhead: what must fit in the GPU's memory
};

struct Speed {
  bool known = false;          // false: no GPU with calibrated numbers (memory plan only)
  std::vector<Term> micro;     // seconds of the largest micro-batch, by kind of work
  double step_s = 0;           // mean optimizer step (slowest rank), all-reduce and optimizer included
  double tokens_per_s = 0;     // real tokens per second, all ranks together (what train logs)
  double mfu = 0;              // flops_per_token x tokens/s / (peak x world)
  double allreduce_bytes = 0;  // per step and rank (world > 1)
  double allreduce_s = 0;
  double optimizer_s = 0;
  bool calibrated = false;
};

struct Plan {
  RunSpec spec;
  std::optional<GpuSpec> gpu;
  std::string model_type;
  int64_t layers = 0, params = 0, trainable = 0, matmul_params = 0;
  int64_t shard = 0;           // ZeRO-1: trainable values per rank's shard (0: not sharded)
  double flops_per_token = 0;  // the trainer's MFU basis
  // The batch plan: the largest micro-batch (token slots, padding included) sets the memory.
  int64_t micro_batches = 0, largest_micro_tokens = 0, steps_per_epoch = 0, total_steps = 0;
  double tokens_per_step = 0;  // mean real tokens per optimizer step, all ranks
  double padding = 0;
  Memory memory;
  Speed speed;
  double duration_s = 0;    // total_steps x step_s (0 when the speed is unknown)
  bool fits_known = false;  // a GPU memory to compare with
  bool fits = false;
};

// One change to the run that `advise` considers, with its plan.
struct Candidate {
  std::string change;  // "--train.tokens_per_batch 8192 --train.grad_accum 2"
  std::string why;
  Plan plan;
};

// The plan of `spec` on `gpu` (nullopt: no GPU known, memory only). Throws hs::Error when the data cannot be
// planned at these settings (a sample longer than train.tokens_per_batch, as BatchPlan says).
Plan estimate(const io::HfConfig& model, const RunSpec& spec, const Samples& samples,
              const std::optional<GpuSpec>& gpu);

// When the plan does not fit (or runs far below what a bigger batch would give): the changes that fit, the
// one losing least speed first: the largest train.tokens_per_batch (grad_accum raised to keep the global
// batch), train.grad_ckpt on / offload, finetune = qlora, more ranks. Empty when nothing needs changing or
// no GPU memory is known.
std::vector<Candidate> advise(const io::HfConfig& model, const Plan& plan, const Samples& samples);

// The human report (aligned tables, GiB, a one-line verdict) and the same as JSON.
std::string render_text(const Plan& plan, const std::vector<Candidate>& advice);
nlohmann::ordered_json to_json(const Plan& plan, const std::vector<Candidate>& advice);
// The verdict line alone ("fits: peak 17.7 GiB of 79.2 GiB (H100 SXM)").
std::string verdict(const Plan& plan);

// Parameter counts from config.json (what the model's tensors hold), for tests and the report.
struct ParamCounts {
  int64_t embed = 0, lm_head = 0, norms = 0, biases = 0, projections = 0;
  int64_t total() const { return embed + lm_head + norms + biases + projections; }
};
ParamCounts count_params(const io::HfConfig& model);
// [out, in] of a projection.
std::pair<int64_t, int64_t> proj_shape(const io::HfConfig& model, model::Proj p);
// LoRA parameters r x (in + out) over the targeted projections of every layer.
int64_t lora_params(const io::HfConfig& model, int64_t r, const std::vector<model::Proj>& targets);
// Device bytes of one NF4 weight of `numel` elements (codes, 8-bit absmax, code book, nested absmax and
// code map), as quant::Nf4Tensor::bytes counts them.
int64_t nf4_weight_bytes(int64_t numel);
// Trainable tensors: LoRA's A and B per adapted projection and layer, or every parameter tensor (full).
int64_t trainable_tensors(const io::HfConfig& model, const RunSpec& spec);
// ZeRO-1's shard of `numel` trainable values over `world` ranks and the padded total (train/zero1.cpp).
// train/zero1.cpp's layout: sections of at most 2^26 values cut into one run of whole norm chunks per rank.
// shard: this rank's values (all its runs); padded: the fp64 sum's values (every rank's runs); staging: the
// widest section's runs of all ranks (its fp32 staging buffer).
struct Zero1Shape {
  int64_t shard = 0, padded = 0, staging = 0;
};
Zero1Shape zero1_shape(int64_t numel, int world);
// The trainer's FLOPs per token: (full ? 6 : 4) x (vocab x hidden + the projections' in x out).
double trainer_flops_per_token(const io::HfConfig& model, bool full);

}  // namespace hs::plan
