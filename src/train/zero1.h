// ZeRO-1 for full fine-tuning (dist.shard_optimizer = on): the fp32 master weights and the AdamW moments are
// split across ranks in contiguous shards of the flat buffer (padded so that every rank's shard has the same
// size, a whole number of norm chunks). A step reduce-scatters the gradient (the fp32 flat gradient, or the
// fp64 sum of train.grad_sum: the same values an all-reduce would give this rank's shard), clips with the
// global norm, updates this rank's shard with AdamW and all-gathers the weights in the model's dtype into the
// flat gradient buffer's memory (free until the next step's zero), from where every rank's tensors are
// refreshed. Per rank this keeps 12 bytes per parameter of state in 12/N.
//
// The gradient norm is computed the same way with or without shards (chunked_grad_norm): per fixed chunk a
// sum of squares in fp64, then the chunks added in order; shards hold whole chunks, so sharded and unsharded
// runs clip by the same number and give the same bits on CPU.
//
// Checkpoints hold the whole state as unsharded runs write it (gathered to rank 0, whose host memory holds
// 12 bytes per parameter while saving), so they resume at any world size, sharded or not.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace hs::dist {
class Communicator;
}

namespace hs::train {

class FlatParams;

// The norm chunk for a flat buffer of `numel` values: a power of two, about numel/64, in [2^10, 2^24].
int64_t norm_chunk(int64_t numel);

// sqrt(sum of squares) of flat gradient values [begin, end) (global indices; `values` holds them from index
// `begin` on), in fp64 per chunk of `chunk` values, chunks added in order. With `comm`, each rank passes its
// shard and the chunk sums of all ranks are combined in rank order (= chunk order): the result is the norm of
// the whole gradient, the same bits as an unsharded call over [0, numel).
double chunked_grad_norm(const at::Tensor& values, int64_t begin, int64_t end, int64_t chunk,
                         dist::Communicator* comm);

class Zero1 {
 public:
  // Shards `flat` (its master must hold the full, rank-identical values: call after the broadcast).
  Zero1(FlatParams& flat, dist::Communicator& comm);

  int64_t shard_numel() const { return shard_; }
  int64_t padded_numel() const { return shard_ * world_; }
  int64_t begin() const { return begin_; }
  int64_t end() const;  // past this rank's last real value
  int64_t chunk() const { return chunk_; }
  at::Tensor& grad_shard() { return grad_shard_; }  // fp32, this rank's reduced gradient

  // The step's gradient, reduced over ranks, for this rank's shard: from the fp64 sum (padded_numel()
  // values) when `grad_sum` is defined, else from the flat fp32 gradient (gathered).
  void reduce_scatter(const at::Tensor& grad_sum);
  double grad_norm();
  // After the optimizer step on the shard: every rank's tensors get all shards' values.
  void all_gather_params();
  // The all-gathered weights as float32 bits (rank-identical), valid from all_gather_params() until the
  // next step zeroes the gradient buffer: what the rank-agreement checksums read.
  at::Tensor gathered_bits() const;

  // The whole of a sharded tensor (master or a moment) on rank 0's host, numel() values (collective; other
  // ranks get an undefined tensor).
  at::Tensor gather_full(const at::Tensor& shard);
  // This rank's shard of a whole flat tensor (numel() values, any device), on `like`'s device and dtype.
  at::Tensor my_part(const at::Tensor& full, const at::Tensor& like) const;

 private:
  FlatParams& flat_;
  dist::Communicator& comm_;
  int rank_ = 0, world_ = 1;
  int64_t numel_ = 0, chunk_ = 0, shard_ = 0, begin_ = 0;
  at::ScalarType weight_dtype_;
  at::Tensor grad_shard_, gathered_;
};

}  // namespace hs::train
