// BatchPlan (see batch_plan.h for the rules): packing by best-fit decreasing, even refill when a step takes
// several micro-batches, a portable per-epoch shuffle and a snake deal of each step's micro-batches to
// ranks. Everything is a pure function of lengths, trained counts and options, so every rank, `hsloth
// train` and `hsloth inspect` compute the same plan and the same per-step statistics (step_stats()).
#include "data/batch_plan.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <set>

#include "core/error.h"

namespace hs::data {

Packing parse_packing(const std::string& name) {
  if (name == "packed") return Packing::packed;
  if (name == "padded") return Packing::padded;
  throw Error("unknown packing '" + name + "'").hint("use packed or padded");
}

void portable_shuffle(std::vector<int64_t>& v, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (size_t i = v.size(); i > 1; --i) {
    // Uniform in [0, i) by rejection: no modulo bias, no implementation-defined distribution.
    const uint64_t n = i, limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do r = rng();
    while (r >= limit);
    std::swap(v[i - 1], v[size_t(r % n)]);
  }
}

namespace {

void add_sample(MicroBatch& mb, int64_t id, const std::vector<int32_t>& lengths,
                const std::vector<int32_t>& trained) {
  mb.samples.push_back(id);
  mb.tokens += lengths[size_t(id)];
  mb.trained += trained[size_t(id)];
  mb.row_len = mb.tokens;
}

// Best-fit decreasing (samples come longest first): each goes into the open bin with the least room that
// still fits it, else a new bin. (room, bin) pairs keep the open bins ordered.
void pack_best_fit(std::vector<MicroBatch>& out, const std::vector<int64_t>& order,
                   const std::vector<int32_t>& lengths, const std::vector<int32_t>& trained, int64_t cap) {
  std::set<std::pair<int64_t, int64_t>> open;
  for (int64_t id : order) {
    const int64_t len = lengths[size_t(id)];
    auto it = open.lower_bound({len, -1});
    int64_t bin;
    if (it == open.end()) {
      bin = int64_t(out.size());
      out.push_back({});
    } else {
      bin = it->second;
      open.erase(it);
    }
    MicroBatch& mb = out[size_t(bin)];
    add_sample(mb, id, lengths, trained);
    if (cap - mb.tokens > 0) open.insert({cap - mb.tokens, bin});
  }
}

// Exactly `bins` bins filled evenly: longest first, each sample into the emptiest bin (ties: lowest index);
// false when a sample does not fit even there (the caller retries with more bins). Empty bins are dropped.
bool pack_evenly(std::vector<MicroBatch>& out, const std::vector<int64_t>& order,
                 const std::vector<int32_t>& lengths, const std::vector<int32_t>& trained, int64_t cap,
                 int64_t bins) {
  out.assign(size_t(bins), MicroBatch{});
  std::set<std::pair<int64_t, int64_t>> fill;  // (tokens, bin)
  for (int64_t b = 0; b < bins; ++b) fill.insert({0, b});
  for (int64_t id : order) {
    auto it = fill.begin();
    const int64_t bin = it->second;
    if (it->first + lengths[size_t(id)] > cap) return false;
    fill.erase(it);
    add_sample(out[size_t(bin)], id, lengths, trained);
    fill.insert({out[size_t(bin)].tokens, bin});
  }
  out.erase(std::remove_if(out.begin(), out.end(), [](const MicroBatch& m) { return m.samples.empty(); }),
            out.end());
  return true;
}

}  // namespace

BatchPlan BatchPlan::build(const std::vector<int32_t>& lengths, const std::vector<int32_t>& trained,
                           const std::vector<int64_t>& ids, const PlanOptions& options) {
  HS_CHECK(lengths.size() == trained.size(), "lengths/trained size mismatch");
  HS_CHECK(options.tokens_per_batch > 0 && options.world_size > 0 && options.grad_accum > 0,
           "bad plan options");
  BatchPlan plan;
  plan.options_ = options;
  const int64_t cap = options.tokens_per_batch;
  // Longest first; ties by id so that the plan does not depend on anything but the data.
  std::vector<int64_t> order(ids);
  int64_t too_long = 0, longest = -1;  // samples over the cap, and the longest of them
  for (int64_t id : order) {
    HS_CHECK(id >= 0 && size_t(id) < lengths.size(), "sample id out of range");
    if (lengths[size_t(id)] > cap) {
      ++too_long;
      if (longest < 0 || lengths[size_t(id)] > lengths[size_t(longest)]) longest = id;
    }
    plan.num_samples_ += 1;
    plan.num_trained_ += trained[size_t(id)];
  }
  if (too_long > 0)
    throw Error(hs::str(too_long, " sample(s) are longer than train.tokens_per_batch = ", cap,
                        " (longest: sample ", longest, " has ", lengths[size_t(longest)], " tokens)"))
        .hint(hs::str("raise train.tokens_per_batch to at least ", lengths[size_t(longest)],
                      ", or re-run hsloth prep with --max-len ", cap, " (--too-long drop|truncate)"));
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return lengths[size_t(a)] != lengths[size_t(b)] ? lengths[size_t(a)] > lengths[size_t(b)] : a < b;
  });

  if (options.packing == Packing::packed) {
    pack_best_fit(plan.micro_, order, lengths, trained, cap);
    const int64_t per_step = int64_t(options.grad_accum) * options.world_size;
    if (per_step > 1) {
      // Several micro-batches per step: as many micro-batches as a whole number of steps, filled evenly, so
      // that no step is short and every rank of every step gets about the same number of tokens.
      int64_t bins = (int64_t(plan.micro_.size()) + per_step - 1) / per_step * per_step;
      bins = std::min<int64_t>(bins, plan.num_samples_);
      std::vector<MicroBatch> even;
      while (!pack_evenly(even, order, lengths, trained, cap, bins)) bins += per_step;
      plan.micro_ = std::move(even);
    }
  } else {
    // Sorted longest first: a micro-batch takes rows while rows × (its first, longest, sample) fits.
    for (size_t i = 0; i < order.size();) {
      MicroBatch mb;
      mb.row_len = lengths[size_t(order[i])];
      const int64_t max_rows = std::max<int64_t>(1, cap / std::max<int64_t>(1, mb.row_len));
      while (i < order.size() && int64_t(mb.samples.size()) < max_rows) {
        int64_t id = order[i++];
        mb.samples.push_back(id);
        mb.tokens += lengths[size_t(id)];
        mb.trained += trained[size_t(id)];
      }
      mb.rows = int64_t(mb.samples.size());
      plan.micro_.push_back(std::move(mb));
    }
  }
  return plan;
}

int64_t BatchPlan::steps_per_epoch() const {
  const int64_t per_step = int64_t(options_.grad_accum) * options_.world_size;
  return std::max<int64_t>(1, (int64_t(micro_.size()) + per_step - 1) / per_step);
}

const std::vector<int64_t>& BatchPlan::epoch_order(int64_t epoch) const {
  if (cached_epoch_ != epoch) {
    cached_order_.resize(micro_.size());
    std::iota(cached_order_.begin(), cached_order_.end(), 0);
    // The seed of epoch e mixes the run seed and e (splitmix64) so epochs are independent permutations.
    uint64_t z = options_.seed + 0x9e3779b97f4a7c15ull * uint64_t(epoch + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    if (options_.shuffle) portable_shuffle(cached_order_, z ^ (z >> 31));
    cached_epoch_ = epoch;
  }
  return cached_order_;
}

std::vector<std::vector<int64_t>> BatchPlan::deal(int64_t step) const {
  const int64_t spe = steps_per_epoch();
  const int64_t epoch = step / spe, in_epoch = step % spe;
  const int64_t per_step = int64_t(options_.grad_accum) * options_.world_size;
  const auto& order = epoch_order(epoch);
  const int64_t begin = in_epoch * per_step, end = std::min<int64_t>(begin + per_step, int64_t(order.size()));
  std::vector<int64_t> chosen(order.begin() + begin, order.begin() + std::max(begin, end));
  std::stable_sort(chosen.begin(), chosen.end(),
                   [&](int64_t a, int64_t b) { return micro_[size_t(a)].tokens > micro_[size_t(b)].tokens; });
  std::vector<std::vector<int64_t>> out(size_t(options_.world_size));
  const int64_t w = options_.world_size;
  for (size_t i = 0; i < chosen.size(); ++i) {
    const int64_t round = int64_t(i) / w, pos = int64_t(i) % w;
    const int64_t rank = (round % 2 == 0) ? pos : w - 1 - pos;  // snake: 0..w-1, w-1..0, ...
    out[size_t(rank)].push_back(chosen[i]);
  }
  return out;
}

std::vector<int64_t> BatchPlan::step_batches(int64_t step, int rank) const {
  HS_CHECK(rank >= 0 && rank < options_.world_size, "rank out of range");
  return deal(step)[size_t(rank)];
}

int64_t BatchPlan::step_trained(int64_t step) const {
  int64_t sum = 0;
  for (const auto& r : deal(step))
    for (int64_t m : r) sum += micro_[size_t(m)].trained;
  return sum;
}

std::vector<int64_t> BatchPlan::step_tokens_per_rank(int64_t step) const {
  std::vector<int64_t> out;
  for (const auto& r : deal(step)) {
    int64_t t = 0;
    for (int64_t m : r) t += micro_[size_t(m)].tokens;
    out.push_back(t);
  }
  return out;
}

StepStats BatchPlan::step_stats(int64_t step) const {
  StepStats s;
  int64_t largest = 0;
  for (const auto& r : deal(step)) {
    int64_t t = 0;
    for (int64_t m : r) {
      t += micro_[size_t(m)].tokens;
      s.trained += micro_[size_t(m)].trained;
    }
    s.rank_tokens.push_back(t);
    s.rank_micro_batches.push_back(int64_t(r.size()));
    s.micro_batches += int64_t(r.size());
    s.tokens += t;
    largest = std::max(largest, t);
  }
  const double mean = double(s.tokens) / double(options_.world_size);
  s.imbalance = mean > 0 ? double(largest) / mean : 1.0;
  return s;
}

int64_t BatchPlan::padded_tokens() const {
  int64_t n = 0;
  for (const auto& mb : micro_) n += mb.padded_tokens();
  return n;
}

double BatchPlan::padding_fraction() const {
  int64_t padded = 0, real = 0;
  for (const auto& mb : micro_) {
    padded += mb.padded_tokens();
    real += mb.tokens;
  }
  return padded > 0 ? 1.0 - double(real) / double(padded) : 0;
}

}  // namespace hs::data
