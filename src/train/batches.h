// Micro-batches from shards as model inputs, shared by `hsloth train` and `hsloth eval`: collate() wraps
// data::collate_rows()'s host rows (data/collate.h: one packed row with cu_seqlens, positions restarting per
// sample and attention never crossing samples; or padded rows, pads after each sample, never attended to
// by real tokens under causal attention and never targets) in CPU tensors, and eval_loss() runs a plan's
// micro-batches (this rank's share: every world-th, starting at rank) forward without gradients and sums
// the token losses.
#pragma once

#include <cstdint>
#include <functional>

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
