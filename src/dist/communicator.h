// Communicator: the collectives the trainer needs on tensors (sum all-reduce, broadcast, barrier), behind
// one interface so the trainer has a single path for every world size: a local one for a single process,
// MPI_Allreduce for CPU tensors across ranks, and NCCL for GPU tensors (the multi-GPU issue). Tensors are
// reduced in place and must be contiguous.
#pragma once

#include <memory>
#include <string>

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
};

// This rank's device: GPU number (node-local rank mod visible GPUs) when CUDA is available, else the CPU.
// With CUDA_VISIBLE_DEVICES set per task (Slurm's GPU binding) every rank sees one GPU, its own. Makes it
// the current CUDA device.
at::Device rank_device();

// The communicator for tensors on `device`: local when the world has one rank, MPI for CPU tensors, NCCL
// for GPU tensors (CPU tensors of an NCCL job still go over MPI).
std::unique_ptr<Communicator> make_communicator(const at::Device& device);

}  // namespace hs::dist
