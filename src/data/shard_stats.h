// Statistics of a shard set from its per-sample lengths and trained counts (what `hsloth inspect`
// prints): totals, length percentiles, a length histogram (power-of-two octaves, each cut into 4 equal bins
// from length 4 up), and the padding waste of batching strategies at a token budget N per micro-batch.
// The two that `hsloth train` runs come from data::BatchPlan itself, for the run's world × grad_accum
// micro-batches per step, so inspect reports the micro-batches the trainer makes:
//
//   packed          train.packing = packed: BatchPlan's micro-batches (best-fit decreasing; with several
//                   micro-batches per step, refilled evenly over a whole number of steps' worth). Each is one
//                   row of at most N tokens; waste = unused budget = empty slots / (micro-batches x N).
//   padded          train.packing = padded: BatchPlan's micro-batches, samples sorted longest first, a
//                   micro-batch takes rows while rows x its longest <= N. waste = pad tokens / slots,
//                   slots = rows x longest summed over micro-batches (what the trainer logs as padding).
// Two padded loaders hsloth does not run, for comparison: consecutive samples, each batch growing while
// (samples + 1) x longest <= N, in a seeded random order ("shuffled": a loader without length grouping)
// and in ascending length order ("grouped").
// A sample longer than N (the trainer refuses those) gets a batch of its own exactly its size, and is
// counted as over_budget.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "data/batch_plan.h"

namespace hs::data {

struct BatchWaste {
  int64_t batches = 0;
  int64_t slots = 0;    // token positions the batches hold (incl. padding)
  int64_t padding = 0;  // slots - tokens
  double waste() const { return slots > 0 ? double(padding) / double(slots) : 0.0; }
};

struct HistogramBin {
  int64_t lo = 0, hi = 0;  // [lo, hi)
  int64_t count = 0;
};

struct ShardStats {
  int64_t samples = 0, tokens = 0, trained = 0;
  int64_t min_len = 0, max_len = 0;
  double mean_len = 0;
  int64_t p50 = 0, p90 = 0, p99 = 0;  // nearest-rank percentiles
  std::vector<HistogramBin> histogram;
  int64_t tokens_per_batch = 0;
  int64_t over_budget = 0;  // samples longer than tokens_per_batch
  BatchWaste packed, padded;                   // BatchPlan's: what hsloth train runs
  BatchWaste padded_shuffled, padded_grouped;  // comparison only
};

// Padded batching of lengths in the given order (the comparison loaders above).
BatchWaste padded_batches(std::span<const int32_t> lengths, int64_t tokens_per_batch);
// BatchPlan's micro-batches of these samples at tokens_per_batch, for world × grad_accum micro-batches per
// step (the "packed" and "padded" rules above; waste counted as described there).
BatchWaste plan_waste(std::span<const int32_t> lengths, int64_t tokens_per_batch, Packing packing,
                      int world = 1, int grad_accum = 1);

// All statistics; `seed` fixes the shuffled order (std::mt19937_64 Fisher-Yates); world and grad_accum
// shape the packed plan as in the planned run.
ShardStats compute_stats(std::span<const int32_t> lengths, std::span<const int32_t> trained,
                         int64_t tokens_per_batch, uint64_t seed = 0, int world = 1, int grad_accum = 1);

}  // namespace hs::data
