// Tensors around data::collate_rows() and the eval loop over a BatchPlan. The rows themselves are laid out in
// data/collate.cpp (torch-free); this file only copies them into CPU tensors the model moves to its device.
// sum_over_ranks() adds the totals through the Communicator, in rank order (the same bits on every rank).
// Prefetcher runs each background load through std::async: its future carries the batch or the exception
// (std::exception_ptr, the original object) to take(), and is waited on before the next load starts.
#include "train/batches.h"

#include <cstring>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "data/collate.h"

namespace hs::train {

Batch collate(const data::ShardIndex& data, const data::MicroBatch& mb, data::Packing packing) {
  data::Collated c = data::collate_rows(data, mb, packing);
  Batch b;
  at::Tensor ids = at::empty({c.rows, c.row_len}, at::kLong),
             mask = at::empty({c.rows, c.row_len}, at::kByte);
  if (!c.ids.empty()) {
    std::memcpy(ids.data_ptr<int64_t>(), c.ids.data(), c.ids.size() * sizeof(int64_t));
    std::memcpy(mask.data_ptr<uint8_t>(), c.mask.data(), c.mask.size());
  }
  b.inputs.input_ids = ids;
  if (packing == data::Packing::packed) {
    at::Tensor cu = at::empty({int64_t(c.cu_seqlens.size())}, at::kLong);
    std::memcpy(cu.data_ptr<int64_t>(), c.cu_seqlens.data(), c.cu_seqlens.size() * sizeof(int64_t));
    b.inputs.cu_seqlens = cu;
  }
  b.mask = mask;
  return b;
}

Prefetcher::~Prefetcher() {
  if (pending_.valid()) pending_.wait();
}

void Prefetcher::start(int64_t step, int64_t index, Load load) {
  if (!background_) return;
  if (pending_.valid()) pending_.wait();  // one load at a time; the unclaimed one is dropped below
  step_ = step;
  index_ = index;
  pending_ = std::async(std::launch::async, std::move(load));
}

Batch Prefetcher::take(int64_t step, int64_t index, const Load& load) {
  if (pending_.valid()) {
    if (step == step_ && index == index_) return pending_.get();  // rethrows the load's exception here
    pending_.wait();
    pending_ = {};
  }
  return load();
}

void Prefetcher::wait() {
  if (pending_.valid()) pending_.wait();
}

int64_t rank_share(const data::BatchPlan& plan, int rank, int world) {
  return (int64_t(plan.micro_batches().size()) - rank + world - 1) / world;
}

LossTotals eval_loss(model::Model& model, const data::ShardIndex& data, const data::BatchPlan& plan,
                     const at::Device& /*device: the model's, where it moves the host batches*/, int rank,
                     int world, const std::function<void(int64_t, int64_t)>& on_batch) {
  at::NoGradGuard no_grad;
  LossTotals t;
  const auto& mbs = plan.micro_batches();
  const int64_t mine = rank_share(plan, rank, world);
  int64_t done = 0;
  for (size_t i = size_t(rank); i < mbs.size(); i += size_t(world)) {
    Batch b = collate(data, mbs[i], plan.options().packing);
    auto ls = model.loss(b.inputs, b.mask);  // the model moves the host tensors to `device` (device_copy.h)
    t.sum += ls.sum.item<double>();
    t.tokens += ls.count;
    t.samples += int64_t(mbs[i].samples.size());
    if (on_batch) on_batch(++done, mine);
  }
  return t;
}

LossTotals sum_over_ranks(dist::Communicator& comm, const LossTotals& mine) {
  const std::vector<double> sum = comm.sum_over_ranks(std::vector<double>{mine.sum});
  const std::vector<int64_t> counts = comm.sum_over_ranks(std::vector<int64_t>{mine.tokens, mine.samples});
  LossTotals total;
  total.sum = sum[0];
  total.tokens = counts[0];
  total.samples = counts[1];
  return total;
}

}  // namespace hs::train
