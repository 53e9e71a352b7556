// Communicator: every cross-rank operation of the trainer and the subcommands goes through it, behind one
// interface so there is a single path for every world size: a local one for a single process,
// MPI for CPU tensors across ranks, and NCCL for GPU tensors (the multi-GPU issue). Tensors are
// reduced in place and must be contiguous. Floating-point sums over MPI add the ranks' values in rank order
// (an all-to-all of chunks, a local sum, an all-gather), so an element's sum does not depend on how the
// tensor is split into calls or on the message-size thresholds of MPI's own reduction algorithms: a bucketed
// all-reduce, a reduce-scatter (ZeRO-1) and one all-reduce of everything give the same bits on CPU. Small
// host payloads (error texts, checksums, agreed facts) go as bytes: all-gather, gather to a root, broadcast,
// and sums of host vectors added in rank order; they always travel over MPI (world of one: no-ops).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace hs::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  virtual std::string name() const = 0;
  virtual void all_reduce_sum(at::Tensor& tensor) = 0;
  // An in-place sum that is complete after wait_pending(). NCCL: enqueued on the communicator's own stream
  // behind the work already queued on the caller's current stream, so it runs while that stream goes on
  // (overlaps() is true); the other communicators finish it before returning. The tensor must stay alive
  // and untouched until wait_pending().
  virtual void all_reduce_sum_async(at::Tensor& tensor) { all_reduce_sum(tensor); }
  // Waits (with the communicator's deadline) for every async operation started so far; work queued on the
  // caller's current stream afterwards sees their results.
  virtual void wait_pending() {}
  virtual bool overlaps() const { return false; }
  // `out` (n values) = the sum over ranks of this rank's chunk of `in` (world x n values; rank r's chunk is
  // values [r*n, (r+1)*n)). Same dtype and device.
  virtual void reduce_scatter_sum(const at::Tensor& in, at::Tensor& out) = 0;
  // `out` (world x n values) = every rank's `in` (n values) in rank order. Same dtype and device.
  virtual void all_gather(const at::Tensor& in, at::Tensor& out) = 0;
  virtual void broadcast(at::Tensor& tensor, int root) = 0;
  virtual void barrier() = 0;
  // Every rank's bytes, in rank order, on every rank.
  virtual std::vector<std::string> all_gather_bytes(const std::string& bytes);
  // Every rank's bytes, in rank order, on `root` only (other ranks get an empty vector).
  virtual std::vector<std::string> gather_bytes(const std::string& bytes, int root = 0);
  // Rank `root`'s bytes (a string, a serialized plan) on every rank.
  virtual std::string broadcast_bytes(const std::string& bytes, int root = 0);
  // Element-wise sums of a small host vector (the same length on every rank) over the ranks, added in rank
  // order from an all-gather: the same bits on every rank, whatever MPI's reduction order (eval totals).
  std::vector<double> sum_over_ranks(const std::vector<double>& values);
  std::vector<int64_t> sum_over_ranks(const std::vector<int64_t>& values);
};

// This rank's device: GPU number (node-local rank mod visible GPUs) when CUDA is available, else the CPU.
// With CUDA_VISIBLE_DEVICES set per task (Slurm's GPU binding) every rank sees one GPU, its own. Makes it
// the current CUDA device.
at::Device rank_device();

// The communicator for tensors on `device`: local when the world has one rank, MPI for CPU tensors, NCCL
// for GPU tensors (CPU tensors of an NCCL job still go over MPI).
std::unique_ptr<Communicator> make_communicator(const at::Device& device);

}  // namespace hs::dist
