// ZeRO-1 (see zero1.h): shard geometry (equal shards of whole norm chunks), reduce-scatter of the step's
// gradient, the chunked fp64 gradient norm that sharded and unsharded runs share, the all-gather of the
// weights into the gradient buffer's memory, and the gather/split of whole state for checkpoints.
#include "train/zero1.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "core/error.h"
#include "dist/communicator.h"
#include "train/flat_params.h"

namespace hs::train {

int64_t norm_chunk(int64_t numel) {
  int64_t c = int64_t(1) << 10;
  while (c < (int64_t(1) << 24) && c * 2 <= numel / 64) c *= 2;
  return c;
}

double chunked_grad_norm(const at::Tensor& values, int64_t begin, int64_t end, int64_t chunk,
                         dist::Communicator* comm) {
  HS_CHECK(chunk > 0 && begin % chunk == 0, "chunked_grad_norm: shards must start at a chunk");
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> parts;
  for (int64_t c = begin; c < end; c += chunk) {
    const int64_t len = std::min(chunk, end - c);
    parts.push_back(at::square(values.narrow(0, c - begin, len).to(at::kDouble)).sum());
  }
  std::vector<double> sums;
  if (!parts.empty()) {
    at::Tensor all = at::stack(parts).cpu();
    sums.assign(all.data_ptr<double>(), all.data_ptr<double>() + all.numel());
  }
  if (comm != nullptr && comm->world() > 1) {
    std::string mine(sums.size() * sizeof(double), '\0');
    if (!sums.empty()) std::memcpy(mine.data(), sums.data(), mine.size());
    sums.clear();
    for (const std::string& theirs : comm->all_gather_bytes(mine)) {  // rank order = chunk order
      const size_t n = theirs.size() / sizeof(double);
      const size_t at = sums.size();
      sums.resize(at + n);
      if (n > 0) std::memcpy(sums.data() + at, theirs.data(), n * sizeof(double));
    }
  }
  double total = 0;
  for (double s : sums) total += s;
  return std::sqrt(total);
}

Zero1::Zero1(FlatParams& flat, dist::Communicator& comm)
    : flat_(flat), comm_(comm), rank_(comm.rank()), world_(comm.world()), numel_(flat.numel()) {
  chunk_ = norm_chunk(numel_);
  const int64_t per = chunk_ * world_;
  shard_ = std::max<int64_t>(1, (numel_ + per - 1) / per) * chunk_;
  begin_ = int64_t(rank_) * shard_;
  // The weights travel in the tensors' dtype when they share one (bf16: half the bytes), else in fp32.
  weight_dtype_ = flat_.num_tensors() > 0 ? flat_.tensor(0).scalar_type() : at::kFloat;
  for (size_t i = 0; i < flat_.num_tensors(); ++i)
    if (flat_.tensor(i).scalar_type() != weight_dtype_) weight_dtype_ = at::kFloat;
  if (at::elementSize(weight_dtype_) > sizeof(float)) weight_dtype_ = at::kFloat;
  flat_.shard(begin_, shard_, padded_numel());
  grad_shard_ = at::zeros({shard_}, flat_.master().options());
  all_gather_params();
}

int64_t Zero1::end() const { return std::min(numel_, begin_ + shard_); }

void Zero1::reduce_scatter(const at::Tensor& grad_sum) {
  at::NoGradGuard no_grad;
  if (grad_sum.defined()) {
    HS_CHECK(grad_sum.numel() == padded_numel(),
             "ZeRO-1: the fp64 gradient sum must be padded to the shards");
    at::Tensor mine = at::empty({shard_}, grad_sum.options());
    comm_.reduce_scatter_sum(grad_sum, mine);
    grad_shard_.copy_(mine);  // rounded to fp32 once, as the unsharded path does
  } else {
    flat_.gather_grads();
    comm_.reduce_scatter_sum(flat_.grad(), grad_shard_);
  }
}

double Zero1::grad_norm() { return chunked_grad_norm(grad_shard_, begin_, end(), chunk_, &comm_); }

void Zero1::all_gather_params() {
  at::NoGradGuard no_grad;
  // The gradient buffer (fp32, padded_numel() values) has room for the weights in any dtype of <= 4 bytes.
  gathered_ = flat_.grad().view(weight_dtype_).narrow(0, 0, padded_numel());
  const at::Tensor mine = flat_.master().to(weight_dtype_).contiguous();
  comm_.all_gather(mine, gathered_);
  flat_.push_params_from(gathered_);
}

at::Tensor Zero1::gathered_bits() const {
  const int64_t bytes = padded_numel() * int64_t(at::elementSize(weight_dtype_));
  return flat_.grad().view(at::kByte).narrow(0, 0, bytes - bytes % 4).view(at::kFloat);
}

at::Tensor Zero1::gather_full(const at::Tensor& shard) {
  const at::Tensor cpu = shard.to(at::kCPU, at::kFloat).contiguous();
  std::string mine(reinterpret_cast<const char*>(cpu.data_ptr()), size_t(cpu.nbytes()));
  std::vector<std::string> all = comm_.gather_bytes(mine, 0);
  if (rank_ != 0) return {};
  at::Tensor full = at::empty({numel_}, at::kFloat);
  for (int r = 0; r < world_; ++r) {
    const int64_t n = std::clamp<int64_t>(numel_ - int64_t(r) * shard_, 0, shard_);
    HS_CHECK(all[size_t(r)].size() == size_t(shard_) * sizeof(float), "ZeRO-1: rank ", r, " sent ",
             all[size_t(r)].size(), " bytes of state");
    if (n > 0)
      std::memcpy(full.data_ptr<float>() + int64_t(r) * shard_, all[size_t(r)].data(), size_t(n) * 4);
    std::string().swap(all[size_t(r)]);
  }
  return full;
}

at::Tensor Zero1::my_part(const at::Tensor& full, const at::Tensor& like) const {
  HS_CHECK(full.numel() == numel_, "ZeRO-1: ", full.numel(), " values of state for ", numel_, " parameters");
  at::Tensor out = at::zeros({shard_}, like.options());
  const int64_t n = end() - begin_;
  if (n > 0) out.narrow(0, 0, n).copy_(full.reshape({numel_}).narrow(0, begin_, n));
  return out;
}

}  // namespace hs::train
