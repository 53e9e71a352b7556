// ZeRO-1 (see zero1.h): the section/run layout, staging of the tensors' gradients per section, reduce-scatter
// into the shard, the chunked fp64 norm that sharded and unsharded runs share, the all-gather of the updated
// runs into the tensors, and the gather/split of whole state for checkpoints.
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
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Sum of squares in fp64 of each chunk of `values`, appended in order.
void chunk_sums(const at::Tensor& values, int64_t chunk, std::vector<at::Tensor>& out) {
  const int64_t n = values.numel();
  for (int64_t c = 0; c < n; c += chunk)
    out.push_back(at::square(values.narrow(0, c, std::min(chunk, n - c)).to(at::kDouble)).sum());
}

std::vector<double> to_host(const std::vector<at::Tensor>& parts) {
  if (parts.empty()) return {};
  at::Tensor all = at::stack(parts).cpu();
  return std::vector<double>(all.data_ptr<double>(), all.data_ptr<double>() + all.numel());
}

}  // namespace

double chunked_grad_norm(const at::Tensor& values, int64_t chunk) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> parts;
  chunk_sums(values, chunk, parts);
  double total = 0;
  for (double s : to_host(parts)) total += s;
  return std::sqrt(total);
}

Zero1::Zero1(FlatParams& flat, dist::Communicator& comm, bool fp64_sum)
    : flat_(flat), comm_(comm), rank_(comm.rank()), world_(comm.world()), numel_(flat.numel()) {
  HS_CHECK(flat_.sharded() && flat_.num_tensors() > 0, "ZeRO-1 needs a FlatParams made without flat buffers");
  chunk_ = norm_chunk(numel_);
  const int64_t section = zero1_section(numel_, chunk_);
  int64_t sum_at = 0;
  for (int64_t b = 0; b < numel_; b += section) {
    Section s{};
    s.begin = b;
    s.numel = std::min(section, numel_ - b);
    s.run = zero1_run(s.numel, chunk_, world_);
    s.shard_offset = shard_;
    s.sum_offset = sum_at;
    shard_ += s.run;
    sum_at += s.run * world_;
    sections_.push_back(s);
  }
  // The weights travel in the tensors' dtype when they share one of <= 4 bytes (bf16: half), else in fp32.
  weight_dtype_ = flat_.tensor(0).scalar_type();
  for (size_t i = 0; i < flat_.num_tensors(); ++i) {
    HS_CHECK(flat_.tensor(i).is_contiguous(), "ZeRO-1: trainable tensor ", flat_.names()[i],
             " is not contiguous");
    if (flat_.tensor(i).scalar_type() != weight_dtype_) weight_dtype_ = at::kFloat;
  }
  if (at::elementSize(weight_dtype_) > sizeof(float)) weight_dtype_ = at::kFloat;
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(flat_.tensor(0).device());
  at::Tensor master = at::zeros({shard_}, opts);
  {
    at::NoGradGuard no_grad;
    for (const auto& s : sections_) {
      const int64_t start = s.begin + int64_t(rank_) * s.run;
      overlapping(start, real_count(s, rank_), [&](const at::Tensor& t, int64_t in_t, int64_t in_r, int64_t len) {
        master.narrow(0, s.shard_offset + in_r, len).copy_(t.detach().view({-1}).narrow(0, in_t, len));
      });
    }
  }
  flat_.adopt_master(master);
  grad_shard_ = at::zeros({shard_}, opts);
  int64_t widest = 0;
  for (const auto& s : sections_) widest = std::max(widest, s.run * world_);
  staging_ = at::empty({widest}, opts);
  if (fp64_sum) grad_sum_ = at::zeros({sum_at}, opts.dtype(at::kDouble));
}

int64_t Zero1::real_count(const Section& s, int r) const {
  return std::clamp<int64_t>(s.numel - int64_t(r) * s.run, 0, s.run);
}

template <typename F>
void Zero1::overlapping(int64_t begin, int64_t count, F&& f) const {
  for (size_t i = 0; i < flat_.num_tensors() && count > 0; ++i) {
    const int64_t o = flat_.offset(i), n = flat_.numel(i);
    const int64_t lo = std::max(o, begin), hi = std::min(o + n, begin + count);
    if (lo < hi) f(flat_.tensor(i), lo - o, lo - begin, hi - lo);
  }
}

at::Tensor Zero1::staging(const Section& s, at::ScalarType type) {
  return staging_.view(type).narrow(0, 0, s.run * world_);
}

void Zero1::stage_grads(const Section& s, at::Tensor& out) {
  out.zero_();
  overlapping(s.begin, s.numel, [&](const at::Tensor& t, int64_t in_t, int64_t in_r, int64_t len) {
    const at::Tensor& g = t.grad();
    if (g.defined()) out.narrow(0, in_r, len).copy_(g.view({-1}).narrow(0, in_t, len));
  });
}

void Zero1::accumulate() {
  at::NoGradGuard no_grad;
  HS_CHECK(grad_sum_.defined(), "ZeRO-1: accumulate() is for the fp64 sum");
  for (const auto& s : sections_) {
    at::Tensor st = staging(s, at::kFloat);
    stage_grads(s, st);
    grad_sum_.narrow(0, s.sum_offset, s.run * world_).add_(st);
  }
}

void Zero1::reduce_scatter() {
  at::NoGradGuard no_grad;
  at::Tensor mine64;
  for (const auto& s : sections_) {
    at::Tensor out = grad_shard_.narrow(0, s.shard_offset, s.run);
    if (grad_sum_.defined()) {
      if (!mine64.defined() || mine64.numel() < s.run) mine64 = at::empty({s.run}, grad_sum_.options());
      at::Tensor part = mine64.narrow(0, 0, s.run);
      comm_.reduce_scatter_sum(grad_sum_.narrow(0, s.sum_offset, s.run * world_), part);
      out.copy_(part);  // rounded to fp32 once, as the unsharded path does
    } else {
      at::Tensor st = staging(s, at::kFloat);
      stage_grads(s, st);
      comm_.reduce_scatter_sum(st, out);
    }
  }
  if (grad_sum_.defined()) grad_sum_.zero_();  // the next step's sum
}

double Zero1::grad_norm() {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> parts;
  for (const auto& s : sections_)
    chunk_sums(grad_shard_.narrow(0, s.shard_offset, real_count(s, rank_)), chunk_, parts);
  const std::vector<double> mine = to_host(parts);
  std::string bytes(mine.size() * sizeof(double), '\0');
  if (!mine.empty()) std::memcpy(bytes.data(), mine.data(), bytes.size());
  const std::vector<std::string> all = comm_.all_gather_bytes(bytes);
  // Section by section, rank by rank: the chunks in flat order, as an unsharded chunked_grad_norm adds them.
  std::vector<size_t> at(size_t(world_), 0);
  double total = 0;
  for (const auto& s : sections_)
    for (int r = 0; r < world_; ++r)
      for (int64_t c = 0; c < ceil_div(real_count(s, r), chunk_); ++c) {
        HS_CHECK((at[size_t(r)] + 1) * sizeof(double) <= all[size_t(r)].size(), "ZeRO-1: rank ", r,
                 " sent too few chunk sums");
        double v;
        std::memcpy(&v, all[size_t(r)].data() + at[size_t(r)]++ * sizeof(double), sizeof v);
        total += v;
      }
  return std::sqrt(total);
}

void Zero1::all_gather_params() {
  at::NoGradGuard no_grad;
  for (const auto& s : sections_) {
    const at::Tensor mine = flat_.master().narrow(0, s.shard_offset, s.run).to(weight_dtype_).contiguous();
    at::Tensor all = staging(s, weight_dtype_);
    comm_.all_gather(mine, all);
    overlapping(s.begin, s.numel, [&](const at::Tensor& t, int64_t in_t, int64_t in_r, int64_t len) {
      t.view({-1}).narrow(0, in_t, len).copy_(all.narrow(0, in_r, len));
    });
  }
}

at::Tensor Zero1::fingerprint() const {
  std::vector<at::Tensor> sums;
  for (size_t i = 0; i < flat_.num_tensors(); ++i) {
    const at::Tensor& t = flat_.tensor(i);
    const size_t es = t.element_size();
    const at::Tensor bits = t.detach().view(es == 2 ? at::kShort : es == 4 ? at::kInt : at::kByte);
    sums.push_back(bits.sum(at::kLong));
  }
  return at::stack(sums).view(at::kFloat);
}

at::Tensor Zero1::gather_full(const at::Tensor& shard) {
  at::Tensor full = rank_ == 0 ? at::empty({numel_}, at::kFloat) : at::Tensor();
  for (const auto& s : sections_) {  // a section at a time: rank 0 holds the whole tensor plus one section
    const at::Tensor cpu = shard.narrow(0, s.shard_offset, s.run).to(at::kCPU, at::kFloat).contiguous();
    std::vector<std::string> all = comm_.gather_bytes(
        std::string(reinterpret_cast<const char*>(cpu.data_ptr()), size_t(cpu.nbytes())), 0);
    if (rank_ != 0) continue;
    for (int r = 0; r < world_; ++r) {
      HS_CHECK(all[size_t(r)].size() == size_t(s.run) * sizeof(float), "ZeRO-1: rank ", r, " sent ",
               all[size_t(r)].size(), " bytes of state");
      const int64_t n = real_count(s, r);
      if (n > 0)
        std::memcpy(full.data_ptr<float>() + s.begin + int64_t(r) * s.run, all[size_t(r)].data(),
                    size_t(n) * sizeof(float));
    }
  }
  return full;
}

std::vector<std::pair<int64_t, int64_t>> Zero1::my_ranges() const {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const auto& s : sections_) {
    const int64_t n = real_count(s, rank_);
    if (n > 0) out.emplace_back(s.begin + int64_t(rank_) * s.run, n);
  }
  return out;
}

at::Tensor Zero1::my_part(const at::Tensor& values, const at::Tensor& like) const {
  at::Tensor out = at::zeros({shard_}, like.options());
  int64_t at = 0;
  for (const auto& s : sections_) {
    const int64_t n = real_count(s, rank_);
    HS_CHECK(at + n <= values.numel(), "ZeRO-1: ", values.numel(), " values of state for this rank's shard");
    if (n > 0) out.narrow(0, s.shard_offset, n).copy_(values.narrow(0, at, n));
    at += n;
  }
  HS_CHECK(at == values.numel(), "ZeRO-1: ", values.numel(), " values of state for ", at, " in this shard");
  return out;
}

}  // namespace hs::train
