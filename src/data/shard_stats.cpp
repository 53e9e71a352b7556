// Shard statistics and batching waste (definitions in shard_stats.h). The packed and padded numbers are
// BatchPlan's own micro-batches, so they are what `hsloth train` runs, not an estimate of it.
#include "data/shard_stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "core/error.h"

namespace hs::data {

BatchWaste padded_batches(std::span<const int32_t> lengths, int64_t n) {
  HS_CHECK(n > 0, "tokens_per_batch must be positive");
  BatchWaste w;
  int64_t count = 0, longest = 0, total_tokens = 0;
  auto close = [&] {
    if (count == 0) return;
    ++w.batches;
    w.slots += count * longest;
    count = longest = 0;
  };
  for (int32_t len : lengths) {
    total_tokens += len;
    if (count > 0 && (count + 1) * std::max<int64_t>(longest, len) > n) close();
    ++count;
    longest = std::max<int64_t>(longest, len);
    if (longest > n) close();  // an over-budget sample is a batch of its own
  }
  close();
  w.padding = w.slots - total_tokens;
  return w;
}

BatchWaste plan_waste(std::span<const int32_t> lengths, int64_t n, Packing packing, int world,
                      int grad_accum) {
  HS_CHECK(n > 0, "tokens_per_batch must be positive");
  // Over-budget samples (the trainer refuses them) each count as a batch exactly their size; BatchPlan
  // plans the others.
  BatchWaste w;
  std::vector<int32_t> all(lengths.begin(), lengths.end()), trained(lengths.size(), 0);
  std::vector<int64_t> ids;
  int64_t total_tokens = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    total_tokens += all[i];
    if (all[i] > n) {
      ++w.batches;
      w.slots += all[i];
    } else {
      ids.push_back(int64_t(i));
    }
  }
  if (!ids.empty()) {
    PlanOptions po;
    po.tokens_per_batch = n;
    po.packing = packing;
    po.world_size = world;
    po.grad_accum = grad_accum;
    po.shuffle = false;  // the order of micro-batches does not change their shapes
    BatchPlan plan = BatchPlan::build(all, trained, ids, po);
    w.batches += int64_t(plan.micro_batches().size());
    w.slots += packing == Packing::packed ? int64_t(plan.micro_batches().size()) * n : plan.padded_tokens();
  }
  w.padding = w.slots - total_tokens;
  return w;
}

ShardStats compute_stats(std::span<const int32_t> lengths, std::span<const int32_t> trained, int64_t n,
                         uint64_t seed, int world, int grad_accum) {
  HS_CHECK(lengths.size() == trained.size(), "lengths and trained differ in size");
  ShardStats s;
  s.samples = int64_t(lengths.size());
  s.tokens_per_batch = n;
  if (lengths.empty()) return s;
  std::vector<int32_t> sorted(lengths.begin(), lengths.end());
  std::sort(sorted.begin(), sorted.end());
  s.tokens = std::accumulate(sorted.begin(), sorted.end(), int64_t(0));
  s.trained = std::accumulate(trained.begin(), trained.end(), int64_t(0));
  s.min_len = sorted.front();
  s.max_len = sorted.back();
  s.mean_len = double(s.tokens) / double(s.samples);
  auto pct = [&](double p) {  // nearest rank: the smallest value with at least p of the samples <= it
    size_t rank = size_t(std::max<double>(1.0, std::ceil(p * double(sorted.size()))));
    return int64_t(sorted[std::min(rank, sorted.size()) - 1]);
  };
  s.p50 = pct(0.50);
  s.p90 = pct(0.90);
  s.p99 = pct(0.99);
  // Octaves [2^k, 2^(k+1)), each split into 4 equal bins from 4 up; from the first to the last non-empty bin.
  for (int64_t octave = 1; octave <= s.max_len; octave *= 2) {
    const int64_t width = octave >= 4 ? octave / 4 : octave;
    for (int64_t lo = octave; lo < octave * 2 && lo <= s.max_len; lo += width) {
      HistogramBin b{lo, lo + width, 0};
      auto first = std::lower_bound(sorted.begin(), sorted.end(), b.lo);
      auto last = std::lower_bound(sorted.begin(), sorted.end(), b.hi);
      b.count = int64_t(last - first);
      if (b.count > 0 || !s.histogram.empty()) s.histogram.push_back(b);
    }
  }
  for (int32_t l : sorted) s.over_budget += l > n;

  s.padded_grouped = padded_batches(sorted, n);
  std::vector<int32_t> shuffled(lengths.begin(), lengths.end());
  std::mt19937_64 rng(seed);
  for (size_t i = shuffled.size(); i > 1; --i) {
    std::uniform_int_distribution<size_t> pick(0, i - 1);
    std::swap(shuffled[i - 1], shuffled[pick(rng)]);
  }
  s.padded_shuffled = padded_batches(shuffled, n);
  s.packed = plan_waste(lengths, n, Packing::packed, world, grad_accum);
  s.padded = plan_waste(lengths, n, Packing::padded, world, grad_accum);
  return s;
}

}  // namespace hs::data
