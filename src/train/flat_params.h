// FlatParams: every trainable tensor of a run in one contiguous fp32 master buffer, and its gradient in
// another. The trainable tensors are replaced by views into the master buffer (leaves sharing its storage)
// whose .grad are views into the gradient buffer, so autograd accumulates straight into one flat buffer:
// one all-reduce, one norm, one AdamW over the whole run; zeroing gradients is one fill. This is exact for
// fp32 tensors (LoRA A/B are kept fp32 and cast to the compute dtype inside the forward, so their gradients
// come back fp32). A non-fp32 trainable tensor (full fine-tuning in bf16) keeps its own storage: its
// gradient is gathered into the flat buffer after backward and its value refreshed from the master after
// each optimizer step.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace hs::train {

class FlatParams {
 public:
  // `slots`: references to the tensors to manage (fp32 ones are replaced in place by views when
  // alias_fp32; otherwise every tensor keeps its storage and is copied to/from the flat buffers, which
  // full fine-tuning uses since it holds handles of the model's own tensors). Names are for errors.
  FlatParams(std::vector<at::Tensor*> slots, std::vector<std::string> names, const at::Device& device,
             bool alias_fp32 = true);

  at::Tensor& master() { return master_; }  // fp32, flat (this rank's shard once shard() ran)
  at::Tensor& grad() { return grad_; }      // fp32, flat (padded to the shards once shard() ran)
  int64_t numel() const { return numel_; }  // of all managed tensors, whatever the sharding
  const std::vector<std::string>& names() const { return names_; }

  void zero_grad();
  // After backward: gathers gradients of tensors that are not views (non-fp32 ones) into grad().
  void gather_grads();
  // The same for tensors [first, last) only (a gradient bucket; see grad_buckets.h).
  void gather_grads(size_t first, size_t last);

  // The managed tensors in flat order: the trainable leaf (the view for aliased ones), where it lives in
  // the flat buffers.
  size_t num_tensors() const { return slots_.size(); }
  const at::Tensor& tensor(size_t i) const { return *slots_[i].tensor; }
  int64_t offset(size_t i) const { return slots_[i].offset; }
  int64_t numel(size_t i) const { return slots_[i].numel; }
  // After an optimizer step: refreshes non-fp32 tensors from the master.
  void push_params();
  // The same from a flat tensor of all values (any dtype, at least numel() values): ZeRO-1's all-gathered
  // weights.
  void push_params_from(const at::Tensor& values);
  // ZeRO-1 (no aliased tensors): keeps only values [begin, begin + shard) of the master (zeros past numel())
  // and pads the gradient buffer to `padded` values. push_params() is then push_params_from()'s job.
  void shard(int64_t begin, int64_t shard, int64_t padded);
  bool sharded() const { return sharded_; }

 private:
  struct Slot {
    at::Tensor* tensor;
    int64_t offset, numel;
    bool aliased;  // a view of master_ (fp32)
  };
  std::vector<Slot> slots_;
  std::vector<std::string> names_;
  at::Tensor master_, grad_;
  int64_t numel_ = 0;
  bool sharded_ = false;
};

}  // namespace hs::train
