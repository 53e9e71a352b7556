// BatchPlan: which samples go into which micro-batch, of which optimizer step, on which rank. It is made
// from sample lengths and trained-token counts alone (ShardIndex reads 16 bytes per sample to plan), so
// every rank derives the same plan without reading sample bytes.
//
// - packed: best-fit decreasing into micro-batches of at most tokens_per_batch tokens; a micro-batch is
//   one row holding several samples (positions restart per sample, attention never crosses samples).
//   When a step takes several micro-batches (grad_accum × world > 1), the samples are then spread over a
//   whole number of steps' worth of micro-batches (best-fit's count rounded up), longest first into the
//   emptiest (worst-fit decreasing), so micro-batches hold nearly equal tokens and no step is
//   short. The micro-batches depend on grad_accum × world only, so -np 1 with grad_accum 4 and -np 4 with
//   grad_accum 1 run the same steps.
// - padded: one sample per row, rows of one micro-batch padded to its longest sample; samples sorted by
//   length so that rows × longest ≤ tokens_per_batch wastes little (for comparison with packing).
// Each epoch shuffles the micro-batch order with a seeded, portable Fisher-Yates (mt19937_64), so the plan
// is identical for a given seed on every platform. An optimizer step takes grad_accum × world
// micro-batches; inside a step they are dealt to ranks by token count (largest first, snake order) so
// ranks get nearly equal work. With fewer samples than micro-batches per step, the last step of an epoch
// is short: a rank without a micro-batch contributes nothing that step (no sample is dropped). The loss of a step is normalised by the step's
// global trained-token count, which the plan knows in advance.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hs::data {

enum class Packing { packed, padded };

struct MicroBatch {
  std::vector<int64_t> samples;  // global sample ids, in row order
  int64_t tokens = 0;            // real tokens
  int64_t trained = 0;           // trained targets
  int64_t rows = 1;              // packed: 1; padded: one per sample
  int64_t row_len = 0;           // packed: tokens; padded: longest sample
  int64_t padded_tokens() const { return rows * row_len; }
};

// One optimizer step of a plan, as the trainer runs and logs it (metrics.jsonl's tokens, trained_tokens and
// imbalance) and as `hsloth inspect --world N --grad-accum G` prints it.
struct StepStats {
  std::vector<int64_t> rank_tokens;         // real tokens per rank
  std::vector<int64_t> rank_micro_batches;  // micro-batches per rank
  int64_t micro_batches = 0, tokens = 0, trained = 0;
  double imbalance = 1;  // the largest rank's tokens / the mean over ranks; 1 for a step without tokens
};

struct PlanOptions {
  int64_t tokens_per_batch = 8192;
  Packing packing = Packing::packed;
  uint64_t seed = 42;
  int world_size = 1;
  int grad_accum = 1;
  bool shuffle = true;  // eval plans keep length order
};

class BatchPlan {
 public:
  // `ids` selects the samples (e.g. a train/eval split); lengths/trained are indexed by global id.
  // Samples longer than tokens_per_batch are an error naming their count, the longest and the fix.
  static BatchPlan build(const std::vector<int32_t>& lengths, const std::vector<int32_t>& trained,
                         const std::vector<int64_t>& ids, const PlanOptions& options);

  const std::vector<MicroBatch>& micro_batches() const { return micro_; }
  const PlanOptions& options() const { return options_; }
  int64_t steps_per_epoch() const;
  int64_t num_samples() const { return num_samples_; }
  int64_t num_trained() const { return num_trained_; }

  // The micro-batches (indices into micro_batches()) that `rank` runs in global optimizer step `step`
  // (steps count across epochs). Empty when the rank has none in a short last step.
  std::vector<int64_t> step_batches(int64_t step, int rank) const;
  // Trained targets of the whole step over all ranks (the loss normaliser).
  int64_t step_trained(int64_t step) const;
  // Real tokens per rank in the step (for the imbalance metric).
  std::vector<int64_t> step_tokens_per_rank(int64_t step) const;
  // Everything the trainer logs about the step's batching; the one place the imbalance is computed.
  StepStats step_stats(int64_t step) const;
  // Token slots of all micro-batches (rows × row length) and the fraction of them that is padding (0 when
  // packed: a packed row is exactly its samples). What `hsloth train` logs as "padding".
  int64_t padded_tokens() const;
  double padding_fraction() const;
  int64_t epoch_of(int64_t step) const { return step / steps_per_epoch(); }

 private:
  // Micro-batch indices of `step`, dealt to ranks: out[rank] = list.
  std::vector<std::vector<int64_t>> deal(int64_t step) const;
  const std::vector<int64_t>& epoch_order(int64_t epoch) const;

  PlanOptions options_;
  std::vector<MicroBatch> micro_;
  int64_t num_samples_ = 0, num_trained_ = 0;
  mutable int64_t cached_epoch_ = -1;
  mutable std::vector<int64_t> cached_order_;
};

// Seeded Fisher-Yates with mt19937_64 and rejection sampling: the same permutation on every platform
// (std::shuffle's algorithm is implementation-defined).
void portable_shuffle(std::vector<int64_t>& v, uint64_t seed);

Packing parse_packing(const std::string& name);

}  // namespace hs::data
