#include "train/batches.h"

#include <cstring>
#include <string>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "dist/mpi_runtime.h"

namespace hs::train {

Batch collate(const data::ShardIndex& data, const data::MicroBatch& mb, data::Packing packing) {
  Batch b;
  const int64_t rows = packing == data::Packing::packed ? 1 : mb.rows;
  const int64_t len = packing == data::Packing::packed ? mb.tokens : mb.row_len;
  at::Tensor ids = at::zeros({rows, len}, at::kLong), mask = at::zeros({rows, len}, at::kByte);
  at::Tensor cu = at::zeros({int64_t(mb.samples.size()) + 1}, at::kLong);
  int64_t* ip = ids.data_ptr<int64_t>();
  uint8_t* mp = mask.data_ptr<uint8_t>();
  int64_t* cp = cu.data_ptr<int64_t>();
  int64_t pos = 0;
  for (size_t i = 0; i < mb.samples.size(); ++i) {
    data::Sample s = data.read_sample(mb.samples[i]);
    if (packing == data::Packing::padded) pos = int64_t(i) * len;
    for (size_t t = 0; t < s.ids.size(); ++t) {
      ip[pos + int64_t(t)] = s.ids[t];
      mp[pos + int64_t(t)] = s.mask[t];
    }
    pos += int64_t(s.ids.size());
    cp[i + 1] = pos;
  }
  b.inputs.input_ids = ids;
  if (packing == data::Packing::packed) b.inputs.cu_seqlens = cu;
  b.mask = mask;
  return b;
}

int64_t rank_share(const data::BatchPlan& plan, int rank, int world) {
  return (int64_t(plan.micro_batches().size()) - rank + world - 1) / world;
}

LossTotals eval_loss(model::Model& model, const data::ShardIndex& data, const data::BatchPlan& plan,
                     const at::Device& device, int rank, int world,
                     const std::function<void(int64_t, int64_t)>& on_batch) {
  at::NoGradGuard no_grad;
  LossTotals t;
  const auto& mbs = plan.micro_batches();
  const int64_t mine = rank_share(plan, rank, world);
  int64_t done = 0;
  for (size_t i = size_t(rank); i < mbs.size(); i += size_t(world)) {
    Batch b = collate(data, mbs[i], plan.options().packing);
    b.inputs.input_ids = b.inputs.input_ids.to(device);
    auto ls = model.loss(b.inputs, b.mask);
    t.sum += ls.sum.item<double>();
    t.tokens += ls.count;
    t.samples += int64_t(mbs[i].samples.size());
    if (on_batch) on_batch(++done, mine);
  }
  return t;
}

LossTotals sum_over_ranks(const LossTotals& mine) {
  std::string bytes(sizeof mine, '\0');
  std::memcpy(bytes.data(), &mine, sizeof mine);
  LossTotals total;
  for (const std::string& b : dist::Mpi::allgather(bytes)) {
    LossTotals r;
    std::memcpy(&r, b.data(), sizeof r);
    total.sum += r.sum;
    total.tokens += r.tokens;
    total.samples += r.samples;
  }
  return total;
}

}  // namespace hs::train
