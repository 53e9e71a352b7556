// Communicator: every cross-rank operation of the trainer and the subcommands goes through it, behind one
// interface so there is a single path for every world size: a local one for a single process,
// MPI_Allreduce for CPU tensors across ranks, and NCCL for GPU tensors (the multi-GPU issue). Tensors are
// reduced in place and must be contiguous. Small host payloads (error texts, checksums, agreed facts) go as
// bytes: all-gather, gather to a root, broadcast, and sums of host vectors added in rank order; they always
// travel over MPI (world of one: no-ops).
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
