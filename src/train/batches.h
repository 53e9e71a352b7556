// Micro-batches from shards as model inputs, shared by `hsloth train` and `hsloth eval`: collate() wraps
// data::collate_rows()'s host rows (data/collate.h: one packed row with cu_seqlens, positions restarting per
// sample and attention never crossing samples; or padded rows, pads after each sample, never attended to
// by real tokens under causal attention and never targets) in CPU tensors, and eval_loss() runs a plan's
// micro-batches (this rank's share: every world-th, starting at rank) forward without gradients and sums
// the token losses. Prefetcher collates the next micro-batch on one background thread while the device runs
// the current one (issue #12: no host waits inside the micro-batch loop).
#pragma once

#include <cstdint>
#include <functional>
#include <future>

#include <ATen/core/Tensor.h>

#include "data/batch_plan.h"
#include "data/shard_index.h"
#include "dist/communicator.h"
#include "model/model.h"

namespace hs::train {

struct Batch {
  model::Inputs inputs;
  at::Tensor mask;  // uint8 loss mask, the shape of inputs.input_ids
};

// data::collate_rows() as tensors: input_ids int64 [rows, row_len], mask uint8, cu_seqlens int64 when packed.
Batch collate(const data::ShardIndex& data, const data::MicroBatch& mb, data::Packing packing);

// One micro-batch ahead, on one worker: start() begins loading a batch in the background, take() returns it
// (waiting if needed) and rethrows there, on the caller's thread, whatever its loading threw -- the same
// exception at the point the batch is used, as if it had been loaded then. A take() of another key than the
// one started drops the started one (after it finished) and loads in the caller. Keys are (step, index in
// the step). At most one load runs at a time, and none runs after wait() returns: call it before anything
// else reads the shard files (HDF5 may not be built thread-safe). With background = false (HS_SYNC_INPUTS=1)
// start() does nothing and take() loads in the caller, as before prefetching existed. Loads must be
// deterministic functions of their key (they read the shards, never the mutable plan caches).
class Prefetcher {
 public:
  using Load = std::function<Batch()>;
  explicit Prefetcher(bool background) : background_(background) {}
  ~Prefetcher();  // waits for a running load; its batch or error is dropped
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  void start(int64_t step, int64_t index, Load load);
  Batch take(int64_t step, int64_t index, const Load& load);
  // Waits for a running load (its result is kept for take()).
  void wait();
  bool background() const { return background_; }

 private:
  bool background_;
  int64_t step_ = -1, index_ = -1;
  std::future<Batch> pending_;
};

// Sums over the trained tokens of this rank's micro-batches of `plan` (on `device`), to be added across ranks.
struct LossTotals {
  double sum = 0;  // summed token cross-entropy
  int64_t tokens = 0, samples = 0;
};
// How many of `plan`'s micro-batches `rank` runs in eval_loss (every world-th, starting at rank).
int64_t rank_share(const data::BatchPlan& plan, int rank, int world);
// `on_batch(done, total)` reports progress (micro-batches of this rank); may be empty.
LossTotals eval_loss(model::Model& model, const data::ShardIndex& data, const data::BatchPlan& plan,
                     const at::Device& device, int rank, int world,
                     const std::function<void(int64_t, int64_t)>& on_batch = {});

// Adds every rank's totals in rank order through `comm` (the same result on every rank, deterministic).
LossTotals sum_over_ranks(dist::Communicator& comm, const LossTotals& mine);

}  // namespace hs::train
