#include "dist/communicator.h"

#include <mpi.h>

#include <ATen/ATen.h>

#include "core/error.h"
#include "dist/mpi_runtime.h"

namespace hs::dist {
namespace {

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world() const override { return 1; }
  std::string name() const override { return "local (world size 1)"; }
  void all_reduce_sum(at::Tensor&) override {}
  void broadcast(at::Tensor&, int) override {}
  void barrier() override {}
};

MPI_Datatype mpi_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return MPI_FLOAT;
    case at::kDouble:
      return MPI_DOUBLE;
    case at::kLong:
      return MPI_INT64_T;
    case at::kInt:
      return MPI_INT32_T;
    case at::kByte:
      return MPI_UINT8_T;
    default:
      throw Error(hs::str("MPI all-reduce of dtype ", t.scalar_type(), " is not supported"))
          .hint("reduce float32/float64/int tensors");
  }
}

// CPU tensors over MPI_COMM_WORLD. Large tensors go in pieces (MPI counts are int).
class MpiCommunicator final : public Communicator {
 public:
  int rank() const override { return Mpi::rank(); }
  int world() const override { return Mpi::world(); }
  std::string name() const override {
    return "MPI (" + std::to_string(Mpi::world()) + " ranks, CPU tensors)";
  }
  void all_reduce_sum(at::Tensor& t) override {
    check(t);
    const int64_t esize = int64_t(t.element_size()), n = t.numel(), chunk = (int64_t(1) << 30) / esize;
    char* p = static_cast<char*>(t.data_ptr());
    for (int64_t off = 0; off < n; off += chunk) {
      int count = int(std::min(chunk, n - off));
      int rc = MPI_Allreduce(MPI_IN_PLACE, p + off * esize, count, mpi_type(t), MPI_SUM, MPI_COMM_WORLD);
      if (rc != MPI_SUCCESS) throw Error("MPI_Allreduce failed").at(hs::str("rank ", rank()));
    }
  }
  void broadcast(at::Tensor& t, int root) override {
    check(t);
    const int64_t n = t.nbytes(), chunk = int64_t(1) << 30;
    char* p = static_cast<char*>(t.data_ptr());
    for (int64_t off = 0; off < n; off += chunk) {
      int rc = MPI_Bcast(p + off, int(std::min(chunk, n - off)), MPI_BYTE, root, MPI_COMM_WORLD);
      if (rc != MPI_SUCCESS) throw Error("MPI_Bcast failed").at(hs::str("rank ", rank()));
    }
  }
  void barrier() override { Mpi::barrier(); }

 private:
  static void check(const at::Tensor& t) {
    HS_CHECK(t.is_contiguous(), "collective on a non-contiguous tensor");
    if (!t.device().is_cpu())
      throw Error("MPI collectives take CPU tensors, got one on " + t.device().str())
          .hint("GPU tensors go through NCCL: build with CUDA and NCCL (hsloth info shows both)");
  }
};

}  // namespace

std::unique_ptr<Communicator> make_communicator(const at::Device& device) {
  if (!Mpi::active() || Mpi::world() == 1) return std::make_unique<LocalCommunicator>();
  if (device.is_cpu()) return std::make_unique<MpiCommunicator>();
  throw Error("multi-rank GPU training needs the NCCL communicator, which is not built yet")
      .hint("run one rank per job for now (mpirun -np 1), or train on CPU");
}

}  // namespace hs::dist
