// Statistics of a shard set from its per-sample lengths and trained counts (what `hsloth inspect`
// prints): totals, length percentiles, a length histogram (power-of-two octaves, each cut into 4 equal bins
// from length 4 up), and the padding waste of two
// batching strategies at a token budget N per batch (per rank and micro-batch):
//
//   padded  Batches of consecutive samples, each padded to the longest in its batch, growing a batch
//           while (samples + 1) x longest <= N. Computed in two orders: "shuffled" (a seeded random order:
//           what a padded loader without length grouping sees) and "length-grouped" (the shards' sorted
//           order). waste = pad tokens / batch slots, slots = samples x longest summed over batches.
//   packed  Samples concatenated into rows of N tokens without splitting any (best-fit decreasing bin
//           packing). waste = empty slots / (rows x N).
// A sample longer than N gets a batch (or row) of its own exactly its size, and is counted as over_budget.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

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
  BatchWaste padded_shuffled, padded_grouped, packed;
};

// Padded batching of lengths in the given order (see above).
BatchWaste padded_batches(std::span<const int32_t> lengths, int64_t tokens_per_batch);
// Best-fit decreasing packing into rows of tokens_per_batch.
BatchWaste packed_rows(std::span<const int32_t> lengths, int64_t tokens_per_batch);

// All statistics; `seed` fixes the shuffled order (std::mt19937_64 Fisher-Yates).
ShardStats compute_stats(std::span<const int32_t> lengths, std::span<const int32_t> trained,
                         int64_t tokens_per_batch, uint64_t seed = 0);

}  // namespace hs::data
