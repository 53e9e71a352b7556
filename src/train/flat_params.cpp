// FlatParams (see flat_params.h): trainable tensors re-seated as views of one fp32 master buffer and their
// gradients as views of one gradient buffer, so all-reduce, norm and AdamW are one call each.
#include "train/flat_params.h"

#include <algorithm>

#include <ATen/ATen.h>

#include "core/error.h"

namespace hs::train {

FlatParams::FlatParams(std::vector<at::Tensor*> slots, std::vector<std::string> names,
                       const at::Device& device, bool alias_fp32)
    : names_(std::move(names)) {
  HS_CHECK(slots.size() == names_.size(), "FlatParams: one name per tensor");
  int64_t total = 0;
  for (auto* t : slots) total += t->numel();
  auto opts = at::TensorOptions().dtype(at::kFloat).device(device);
  master_ = at::empty({total}, opts);
  grad_ = at::zeros({total}, opts);
  numel_ = total;
  at::NoGradGuard no_grad;
  int64_t off = 0;
  for (size_t i = 0; i < slots.size(); ++i) {
    at::Tensor& t = *slots[i];
    const int64_t n = t.numel();
    HS_CHECK(t.device() == device, "trainable tensor ", names_[i], " is on ", t.device(), ", expected ",
             device);
    master_.narrow(0, off, n).copy_(t.detach().reshape({n}));
    const bool aliased = alias_fp32 && t.scalar_type() == at::kFloat;
    if (aliased) {
      // A leaf sharing the master's storage; its gradient is a view of the flat gradient.
      at::Tensor view = master_.narrow(0, off, n).view(t.sizes()).detach();
      view.requires_grad_(true);
      view.mutable_grad() = grad_.narrow(0, off, n).view(t.sizes());
      t = view;
    } else {
      t.requires_grad_(true);
    }
    slots_.push_back({slots[i], off, n, aliased});
    off += n;
  }
}

void FlatParams::zero_grad() {
  grad_.zero_();
  for (auto& s : slots_)
    if (!s.aliased && s.tensor->grad().defined()) s.tensor->mutable_grad().zero_();
}

void FlatParams::gather_grads() { gather_grads(0, slots_.size()); }

void FlatParams::gather_grads(size_t first, size_t last) {
  at::NoGradGuard no_grad;
  for (size_t i = first; i < last; ++i) {
    const Slot& s = slots_[i];
    if (s.aliased) {
      // Autograd accumulates in place into the view we installed; if something replaced the gradient
      // tensor (it must not), fall back to copying so that no gradient is lost.
      const at::Tensor& g = s.tensor->grad();
      if (g.defined() && g.data_ptr() != grad_.narrow(0, s.offset, s.numel).data_ptr())
        grad_.narrow(0, s.offset, s.numel).copy_(g.reshape({s.numel}));
      continue;
    }
    const at::Tensor& g = s.tensor->grad();
    if (g.defined()) grad_.narrow(0, s.offset, s.numel).copy_(g.reshape({s.numel}));
  }
}

void FlatParams::push_params() {
  HS_CHECK(!sharded_, "FlatParams: a sharded master pushes through push_params_from");
  push_params_from(master_);
}

void FlatParams::push_params_from(const at::Tensor& values) {
  HS_CHECK(values.dim() == 1 && values.numel() >= numel_, "FlatParams: ", values.numel(), " values for ",
           numel_, " parameters");
  at::NoGradGuard no_grad;
  for (auto& s : slots_)
    if (!s.aliased) s.tensor->view({s.numel}).copy_(values.narrow(0, s.offset, s.numel));
}

void FlatParams::shard(int64_t begin, int64_t shard, int64_t padded) {
  for (const auto& s : slots_) HS_CHECK(!s.aliased, "FlatParams: aliased tensors cannot be sharded");
  HS_CHECK(begin >= 0 && shard > 0 && begin + shard <= padded && padded >= numel_, "FlatParams: bad shard");
  at::NoGradGuard no_grad;
  at::Tensor mine = at::zeros({shard}, master_.options());
  const int64_t n = std::max<int64_t>(0, std::min(shard, numel_ - begin));
  if (n > 0) mine.narrow(0, 0, n).copy_(master_.narrow(0, begin, n));
  master_ = mine;
  grad_ = at::zeros({padded}, grad_.options());
  sharded_ = true;
}

}  // namespace hs::train
