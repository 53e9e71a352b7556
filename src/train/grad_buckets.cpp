// Bucketed, overlapped gradient all-reduce (see grad_buckets.h): buckets laid out from the end of the flat
// order, a post-hook on every trainable tensor's AccumulateGrad node (the C++ form of PyTorch's
// post-accumulate-grad hook, as DDP's reducer installs it) that completes buckets, and a strict start order.
#include "train/grad_buckets.h"

#include <algorithm>
#include <exception>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "core/error.h"
#include "dist/communicator.h"
#include "train/flat_params.h"

namespace hs::train {
namespace {

// Runs after the tensor's gradient has been accumulated into its .grad.
struct ReadyHook final : torch::autograd::FunctionPostHook {
  ReadyHook(std::shared_ptr<GradBuckets*> owner, size_t tensor) : owner(std::move(owner)), tensor(tensor) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    if (*owner) (*owner)->on_gradient(tensor);
    return outputs;
  }
  std::shared_ptr<GradBuckets*> owner;  // null once the GradBuckets is gone
  size_t tensor;
};

}  // namespace

GradBuckets::GradBuckets(FlatParams& flat, at::Tensor grad_sum, double bucket_mb, dist::Communicator& comm)
    : flat_(flat), grad_sum_(std::move(grad_sum)), comm_(comm), self_(std::make_shared<GradBuckets*>(this)) {
  HS_CHECK(bucket_mb > 0, "GradBuckets: bucket_mb must be positive");
  const size_t n = flat_.num_tensors();
  const int64_t esize = grad_sum_.defined() ? int64_t(sizeof(double)) : int64_t(sizeof(float));
  const double limit = bucket_mb * 1024.0 * 1024.0;
  bucket_of_.assign(n, 0);
  seen_.assign(n, 0);
  // From the last tensor backwards: the order in which backward tends to produce them.
  size_t end = n;
  while (end > 0) {
    size_t first = end;
    int64_t elems = 0;
    while (first > 0 && double(elems * esize) < limit) elems += flat_.numel(--first);
    Bucket b;
    b.first = first;
    b.last = end;
    b.offset = flat_.offset(first);
    b.numel = flat_.offset(end - 1) + flat_.numel(end - 1) - b.offset;
    for (size_t i = first; i < end; ++i) bucket_of_[i] = buckets_.size();
    buckets_.push_back(b);
    end = first;
  }
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor& t = flat_.tensor(i);
    HS_CHECK(t.requires_grad() && t.is_leaf(), "GradBuckets: trainable tensor ", flat_.names()[i],
             " is not a leaf that requires grad");
    std::shared_ptr<torch::autograd::Node> acc = torch::autograd::impl::grad_accumulator(t);
    HS_CHECK(acc != nullptr, "GradBuckets: no gradient accumulator for ", flat_.names()[i]);
    acc->add_post_hook(std::make_unique<ReadyHook>(self_, i));
    accumulators_.push_back(std::move(acc));
  }
}

// The hooks stay on the accumulators (Node has no way to remove one): they find no owner from now on.
GradBuckets::~GradBuckets() { *self_ = nullptr; }

at::Tensor GradBuckets::slice(const Bucket& b) const {
  const at::Tensor& target = grad_sum_.defined() ? grad_sum_ : const_cast<FlatParams&>(flat_).grad();
  return target.narrow(0, b.offset, b.numel);
}

void GradBuckets::arm() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& b : buckets_) {
    b.waiting = b.last - b.first;
    b.gathered = b.started = false;
  }
  std::fill(seen_.begin(), seen_.end(), 0);
  next_ = 0;
  error_.clear();
  armed_ = true;
}

void GradBuckets::gather(Bucket& b) {
  at::NoGradGuard no_grad;
  flat_.gather_grads(b.first, b.last);
  if (grad_sum_.defined())
    grad_sum_.narrow(0, b.offset, b.numel).add_(flat_.grad().narrow(0, b.offset, b.numel));
  b.gathered = true;
}

void GradBuckets::start_ready() {
  if (!comm_.overlaps()) return;
  while (next_ < buckets_.size() && buckets_[next_].gathered) {
    at::Tensor s = slice(buckets_[next_]);
    comm_.all_reduce_sum_async(s);
    buckets_[next_++].started = true;
  }
}

void GradBuckets::on_gradient(size_t tensor) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_ || !error_.empty()) return;
  Bucket& b = buckets_[bucket_of_[tensor]];
  if (b.gathered) {
    // A second gradient for a tensor whose bucket is already gathered (a tensor used by two separate
    // backward passes of one micro-batch): its bucket would be reduced without it.
    error_ = hs::str("the gradient of ", flat_.names()[tensor],
                     " arrived after its all-reduce bucket was complete");
    return;
  }
  if (seen_[tensor]) return;  // accumulated again before the bucket completed: gathered with the rest
  seen_[tensor] = 1;
  try {
    if (--b.waiting == 0) {
      gather(b);
      start_ready();
    }
  } catch (const std::exception& e) {
    error_ = e.what();
  }
}

void GradBuckets::flush() {
  std::lock_guard<std::mutex> lock(mutex_);
  armed_ = false;
  if (!error_.empty())
    throw Error("bucketed gradient all-reduce: " + error_)
        .hint("set dist.bucket_mb = 0 (one all-reduce after the backward)");
  for (auto& b : buckets_)
    if (!b.gathered) gather(b);  // tensors that got no gradient in this micro-batch
  start_ready();
}

void GradBuckets::finish() {
  std::lock_guard<std::mutex> lock(mutex_);
  armed_ = false;
  for (; next_ < buckets_.size(); ++next_) {
    at::Tensor s = slice(buckets_[next_]);
    if (comm_.overlaps())
      comm_.all_reduce_sum_async(s);
    else
      comm_.all_reduce_sum(s);
    buckets_[next_].started = true;
  }
  comm_.wait_pending();
  next_ = 0;
}

}  // namespace hs::train
