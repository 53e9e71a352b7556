// GradBuckets: the gradient all-reduce of a multi-rank step in buckets (dist.bucket_mb), started while the
// backward of the step's last micro-batch is still running, as DDP and llm.c do, so that communication hides
// behind the rest of the backward. A bucket is a run of whole trainable tensors, contiguous in the flat
// buffers, taken from the end of the flat order (the first gradients backward produces: lm_head and the last
// layers). A post-hook on each tensor's gradient accumulator counts the tensors of its bucket; the hook that
// completes a bucket gathers its gradients into the flat buffer (and adds them into the fp64 sum when
// train.grad_sum is fp64: then the fp64 sum is what is reduced) and, on a communicator that overlaps (NCCL),
// starts its all-reduce on the communicator's stream. Buckets start in bucket order on every rank (a bucket
// completed early waits for the ones before it): collectives must be issued in the same order everywhere.
// On CPU (MPI, blocking) the hooks gather and sum the same way but the reductions run in finish(), after the
// step's error agreement; there is no overlap on CPU, and the per-element rank-order sums of the MPI
// communicator make the result bit-identical to one all-reduce of the whole buffer.
// Earlier micro-batches of a step are untouched: they accumulate as without buckets.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace torch::autograd {
struct Node;
}
namespace hs::dist {
class Communicator;
}

namespace hs::train {

class FlatParams;

class GradBuckets {
 public:
  // Reduces `target`: flat.grad() (fp32), or the fp64 gradient sum of the step (then `grad_sum` is it, and
  // each completed bucket's fp32 gradients are added into it first). A bucket holds tensors until it has at
  // least bucket_mb MB of target's dtype (a larger tensor is a bucket of its own).
  GradBuckets(FlatParams& flat, at::Tensor grad_sum, double bucket_mb, dist::Communicator& comm);
  ~GradBuckets();
  GradBuckets(const GradBuckets&) = delete;
  GradBuckets& operator=(const GradBuckets&) = delete;

  size_t size() const { return buckets_.size(); }
  int64_t bucket_numel(size_t i) const { return buckets_[i].numel; }

  // Before the backward of the step's last micro-batch: from here on completed buckets are gathered (summed)
  // and, overlapping, started.
  void arm();
  // After that backward (inside the step's error handling, before the ranks agree on errors): gathers the
  // buckets whose tensors got no gradient, starts what can start; rethrows an error a hook met.
  void flush();
  // After the error agreement: reduces the buckets not started yet, in order, and waits for all of them.
  // A rank that ran no micro-batch this step (never armed) reduces what it holds the same way.
  void finish();

  // Called by the hooks (public for them only).
  void on_gradient(size_t tensor);

 private:
  struct Bucket {
    size_t first, last;     // tensors [first, last) of the flat order
    int64_t offset, numel;  // in the flat buffers
    size_t waiting = 0;     // tensors without their gradient yet
    bool gathered = false, started = false;
  };
  void gather(Bucket& b);
  void start_ready();
  at::Tensor slice(const Bucket& b) const;

  FlatParams& flat_;
  at::Tensor grad_sum_;
  dist::Communicator& comm_;
  std::shared_ptr<GradBuckets*> self_;  // what the hooks call through
  std::vector<Bucket> buckets_;          // in start order (the end of the flat order first)
  std::vector<size_t> bucket_of_;        // tensor -> bucket
  std::vector<char> seen_;               // tensor got its gradient in this backward
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // hold the hooked accumulators
  std::mutex mutex_;
  bool armed_ = false;
  size_t next_ = 0;  // the next bucket to start
  std::string error_;
};

}  // namespace hs::train
