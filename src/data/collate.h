// collate_rows(): a BatchPlan micro-batch turned into the model's input layout, on the host and without torch
// (data/ never links torch; train/batches.h wraps the result in tensors). Packed: one row holding the
// micro-batch's samples back to back, with cu_seqlens marking where each starts (positions restart per
// sample and attention never crosses samples). Padded: one row per sample, each padded after its end to the
// micro-batch's longest sample with id 0 and mask 0 (pads are never targets, and under causal attention
// no real token attends to them).
#pragma once

#include <cstdint>
#include <vector>

#include "data/batch_plan.h"
#include "data/shard_index.h"

namespace hs::data {

struct Collated {
  int64_t rows = 0, row_len = 0;  // ids and mask are [rows, row_len], row-major
  std::vector<int64_t> ids;       // token ids, 0 at pads
  std::vector<uint8_t> mask;      // 1 where the token is a loss target
  // samples + 1 offsets into the flattened tokens (packed only; empty when padded)
  std::vector<int64_t> cu_seqlens;
};

// Reads the micro-batch's samples from `data` in row order. A sample whose stored length differs from the
// plan's (shards changed under a running plan) is an error naming the sample and the fix.
Collated collate_rows(const ShardIndex& data, const MicroBatch& mb, Packing packing);

}  // namespace hs::data
