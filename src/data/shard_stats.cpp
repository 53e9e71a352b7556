// Shard statistics and batching-waste estimates (definitions in shard_stats.h).
#include "data/shard_stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>

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

BatchWaste packed_rows(std::span<const int32_t> lengths, int64_t n) {
  HS_CHECK(n > 0, "tokens_per_batch must be positive");
  std::vector<int32_t> sorted(lengths.begin(), lengths.end());
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  BatchWaste w;
  std::multiset<int64_t> free_space;  // remaining capacity of each open row
  int64_t total_tokens = 0;
  for (int32_t len : sorted) {
    total_tokens += len;
    if (len >= n) {  // fills a row by itself (exactly its size when over budget)
      ++w.batches;
      w.slots += std::max<int64_t>(len, n);
      continue;
    }
    auto it = free_space.lower_bound(len);  // best fit: the fullest row that still has room
    if (it == free_space.end()) {
      ++w.batches;
      w.slots += n;
      free_space.insert(n - len);
    } else {
      int64_t left = *it - len;
      free_space.erase(it);
      free_space.insert(left);
    }
  }
  w.padding = w.slots - total_tokens;
  return w;
}

ShardStats compute_stats(std::span<const int32_t> lengths, std::span<const int32_t> trained, int64_t n,
                         uint64_t seed) {
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
  s.packed = packed_rows(lengths, n);
  return s;
}

}  // namespace hs::data
