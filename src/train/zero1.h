// ZeRO-1 for full fine-tuning (dist.shard_optimizer = on): the fp32 master weights and the AdamW moments
// (12 bytes per parameter) are split across ranks; no rank holds a flat fp32 copy of all gradients or weights.
// The flat parameter order is cut into sections of L values (a power of two, at most 64M: the staging buffer);
// each section into norm chunks of C values, and a section's chunks into one equal run per rank (zeros pad the
// last). A rank's shard is its run of every section, one after the other. A step, section by section: the
// tensors' gradients (or the fp64 sum of train.grad_sum, kept in the padded section layout) are staged in fp32
// and reduce-scattered (this rank receives the sum over ranks of its run, the values an all-reduce gives it);
// the norm is the global one; AdamW updates the shard; the updated runs are all-gathered in the tensors' dtype
// (bf16: half the bytes) and copied into every rank's tensors. Per GPU: the model's weights and gradients, 12/N
// bytes per parameter of state and a staging buffer of at most 256 MB.
//
// The gradient norm (chunked_grad_norm) is computed the same way with or without shards: a sum of squares in
// fp64 per chunk of C values from the start of the flat buffer, chunks added in order. Sections and runs hold
// whole chunks, so sharded and unsharded runs clip by the same number and give the same bits on CPU.
//
// Checkpoints hold the whole state as unsharded runs write it (rank 0 gathers it section by section: its host
// memory holds 12 bytes per parameter while saving), so they resume at any world size, sharded or not; a
// sharded resume reads only this rank's runs from the mapped file.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "train/zero1_layout.h"  // norm_chunk, zero1_section, zero1_run

namespace hs::dist {
class Communicator;
}

namespace hs::train {

class FlatParams;


// sqrt(sum of squares) of the flat gradient `values` (numel values), in fp64 per chunk of `chunk` values
// from the start, chunks added in order.
double chunked_grad_norm(const at::Tensor& values, int64_t chunk);

class Zero1 {
 public:
  // `flat` was made without flat buffers (its tensors hold rank-identical values: broadcast them first); this
  // gives it its master shard. fp64_sum: the step's gradients are summed in fp64 (train.grad_sum).
  Zero1(FlatParams& flat, dist::Communicator& comm, bool fp64_sum);

  int64_t shard_numel() const { return shard_; }
  int64_t sections() const { return int64_t(sections_.size()); }
  at::Tensor& grad_shard() { return grad_shard_; }  // fp32, this rank's reduced gradient
  bool fp64_sum() const { return grad_sum_.defined(); }
  // Device bytes of the fp64 gradient sum (0 without it) and of the staging buffer (for memory plans).
  int64_t fp64_sum_bytes() const { return grad_sum_.defined() ? int64_t(grad_sum_.nbytes()) : 0; }
  int64_t staging_bytes() const { return int64_t(staging_.nbytes()); }

  // fp64 sum only: after each micro-batch but the last, adds the tensors' gradients into the sum.
  void accumulate();
  // After the step's backward: this rank's runs of the gradient summed over micro-batches and ranks.
  void reduce_scatter();
  double grad_norm();
  // After the optimizer step on the shard: every rank's tensors get all runs' values.
  void all_gather_params();
  // A checksum source identical on ranks whose tensors are (float32 bits: what the agreement checks read).
  at::Tensor fingerprint() const;

  // The whole of a sharded flat tensor (master or a moment) on rank 0's host, numel() values in the flat order
  // (collective; other ranks get an undefined tensor).
  at::Tensor gather_full(const at::Tensor& shard);
  // The flat ranges [begin, begin + count) of this rank's real values, in shard order.
  std::vector<std::pair<int64_t, int64_t>> my_ranges() const;
  // This rank's shard from its values in my_ranges() order (a checkpoint loaded in part), on `like`'s device.
  at::Tensor my_part(const at::Tensor& values, const at::Tensor& like) const;

 private:
  struct Section {
    int64_t begin, numel;  // in the flat order
    int64_t run;           // values per rank (whole chunks)
    int64_t shard_offset;  // where this rank's run lives in the shard
    int64_t sum_offset;    // where the section lives in the padded fp64 sum
  };
  // How many of rank r's run of section s are real values (the rest pads).
  int64_t real_count(const Section& s, int r) const;
  at::Tensor staging(const Section& s, at::ScalarType type);  // [world x run] of the staging buffer
  void stage_grads(const Section& s, at::Tensor& out);         // the section's gradients, zero-padded
  // For the tensors overlapping flat values [begin, begin + count): f(tensor, at in it, at in range, len).
  template <typename F>
  void overlapping(int64_t begin, int64_t count, F&& f) const;

  FlatParams& flat_;
  dist::Communicator& comm_;
  int rank_ = 0, world_ = 1;
  int64_t numel_ = 0, chunk_ = 0, shard_ = 0;
  at::ScalarType weight_dtype_;
  std::vector<Section> sections_;
  at::Tensor grad_shard_, grad_sum_, staging_;
};

}  // namespace hs::train
