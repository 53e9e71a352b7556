// Communicator implementations: local (world of one), MPI (CPU tensors over MPI_COMM_WORLD) and NCCL (GPU
// tensors; CPU tensors and bytes over MPI), and rank_device(). Byte collectives share one MPI path (the
// base class), since they carry small host payloads whatever the tensors' device.
#include "dist/communicator.h"

#include <mpi.h>

#include <chrono>
#include <cstring>
#include <exception>
#include <cstdlib>
#include <thread>

#include <unistd.h>

#include <ATen/ATen.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/cuda.h>

#ifdef HS_HAVE_NCCL
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <nccl.h>
#endif

#include "core/error.h"
#include "dist/mpi_runtime.h"

namespace hs::dist {

std::vector<std::string> Communicator::all_gather_bytes(const std::string& bytes) {
  return Mpi::allgather(bytes);
}
std::vector<std::string> Communicator::gather_bytes(const std::string& bytes, int root) {
  return Mpi::gather(bytes, root);
}
std::string Communicator::broadcast_bytes(const std::string& bytes, int root) {
  return Mpi::broadcast(bytes, root);
}

namespace {
template <typename T>
std::vector<T> sum_in_rank_order(Communicator& comm, const std::vector<T>& values) {
  std::string bytes(values.size() * sizeof(T), '\0');
  if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  std::vector<T> total(values.size(), T(0));
  const auto all = comm.all_gather_bytes(bytes);
  for (size_t r = 0; r < all.size(); ++r) {
    if (all[r].size() != bytes.size())
      throw Error(hs::str("sum over ranks: rank ", r, " sent ", all[r].size() / sizeof(T),
                          " values, this rank ", values.size()))
          .at(hs::str("rank ", comm.rank()));
    for (size_t i = 0; i < values.size(); ++i) {
      T v;
      std::memcpy(&v, all[r].data() + i * sizeof(T), sizeof(T));
      total[i] += v;
    }
  }
  return total;
}
}  // namespace

std::vector<double> Communicator::sum_over_ranks(const std::vector<double>& values) {
  return sum_in_rank_order(*this, values);
}
std::vector<int64_t> Communicator::sum_over_ranks(const std::vector<int64_t>& values) {
  return sum_in_rank_order(*this, values);
}

namespace {

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world() const override { return 1; }
  std::string name() const override { return "local (world size 1)"; }
  void all_reduce_sum(at::Tensor&) override {}
  void reduce_scatter_sum(const at::Tensor& in, at::Tensor& out) override { copy_same(in, out); }
  void all_gather(const at::Tensor& in, at::Tensor& out) override { copy_same(in, out); }
  void broadcast(at::Tensor&, int) override {}
  void barrier() override {}
  std::vector<std::string> all_gather_bytes(const std::string& bytes) override { return {bytes}; }
  std::vector<std::string> gather_bytes(const std::string& bytes, int) override { return {bytes}; }
  std::string broadcast_bytes(const std::string& bytes, int) override { return bytes; }

 private:
  static void copy_same(const at::Tensor& in, at::Tensor& out) {
    HS_CHECK(in.numel() == out.numel(), "collective: ", in.numel(), " values in, room for ", out.numel());
    if (in.data_ptr() != out.data_ptr()) out.copy_(in);
  }
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

// CPU tensors over MPI_COMM_WORLD. Large tensors go in pieces (MPI counts are int). Floating-point sums
// add the ranks' values in rank order whatever the size (see communicator.h): MPI_Allreduce picks its
// algorithm, and with it the order of the additions, by message size, so a bucket and the whole tensor could
// differ in the last bit from 3 ranks on. Integer sums (exact in any order) use MPI_Allreduce.
class MpiCommunicator final : public Communicator {
 public:
  int rank() const override { return Mpi::rank(); }
  int world() const override { return Mpi::world(); }
  std::string name() const override {
    return "MPI (" + std::to_string(Mpi::world()) + " ranks, CPU tensors)";
  }
  void all_reduce_sum(at::Tensor& t) override {
    check(t);
    if (at::isFloatingType(t.scalar_type())) return rank_order_all_reduce(t);
    const int64_t esize = int64_t(t.element_size()), n = t.numel(), chunk = (int64_t(1) << 30) / esize;
    char* p = static_cast<char*>(t.data_ptr());
    for (int64_t off = 0; off < n; off += chunk) {
      int count = int(std::min(chunk, n - off));
      int rc = MPI_Allreduce(MPI_IN_PLACE, p + off * esize, count, mpi_type(t), MPI_SUM, MPI_COMM_WORLD);
      if (rc != MPI_SUCCESS) throw Error("MPI_Allreduce failed").at(hs::str("rank ", rank()));
    }
  }
  void reduce_scatter_sum(const at::Tensor& in, at::Tensor& out) override {
    check(in);
    check(out);
    const int w = world();
    const int64_t n = out.numel();
    HS_CHECK(in.numel() == n * w && in.scalar_type() == out.scalar_type(),
             "reduce-scatter: ", in.numel(), " values in, ", n, " out, ", w, " ranks");
    const at::Tensor rows = in.view({w, n});
    for (int64_t off = 0; off < n; off += kPiece) {
      const int64_t len = std::min(kPiece, n - off);
      const at::Tensor send = rows.narrow(1, off, len).contiguous();
      at::Tensor recv = at::empty_like(send);
      mpi_ok(MPI_Alltoall(send.data_ptr(), int(len), mpi_type(send), recv.data_ptr(), int(len),
                          mpi_type(recv), MPI_COMM_WORLD),
             "MPI_Alltoall");
      at::Tensor dst = out.narrow(0, off, len);
      add_rows_in_order(recv, dst);
    }
  }
  void all_gather(const at::Tensor& in, at::Tensor& out) override {
    check(in);
    check(out);
    const int w = world();
    const int64_t n = in.numel(), esize = int64_t(in.element_size());
    HS_CHECK(out.numel() == n * w && in.scalar_type() == out.scalar_type(),
             "all-gather: ", n, " values in, ", out.numel(), " out, ", w, " ranks");
    at::Tensor rows = out.view({w, n});
    const int64_t piece = (int64_t(1) << 30) / esize;
    for (int64_t off = 0; off < n; off += piece) {
      const int64_t len = std::min(piece, n - off);
      at::Tensor recv = at::empty({w, len}, in.options());
      mpi_ok(MPI_Allgather(static_cast<const char*>(in.data_ptr()) + off * esize, int(len * esize), MPI_BYTE,
                           recv.data_ptr(), int(len * esize), MPI_BYTE, MPI_COMM_WORLD),
             "MPI_Allgather");
      rows.narrow(1, off, len).copy_(recv);
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
  static constexpr int64_t kPiece = int64_t(1) << 26;  // values per exchange: int counts, bounded buffers

  void mpi_ok(int rc, const char* what) const {
    if (rc != MPI_SUCCESS) throw Error(hs::str(what, " failed")).at(hs::str("rank ", rank()));
  }
  // dst = rows[0] + rows[1] + ... in that order, one element-wise add at a time (exact IEEE adds).
  static void add_rows_in_order(const at::Tensor& rows, at::Tensor& dst) {
    dst.copy_(rows[0]);
    for (int64_t r = 1; r < rows.size(0); ++r) dst.add_(rows[r]);
  }
  // Piece by piece: rank r gathers chunk r of the piece from every rank (all-to-all), adds them in rank
  // order, and all ranks all-gather the sums. Traffic is that of a ring all-reduce, 2(N-1)/N of the data.
  void rank_order_all_reduce(at::Tensor& t) {
    const int w = world(), me = rank();
    const int64_t n = t.numel();
    at::Tensor flat = t.view({n});
    std::vector<int> counts(static_cast<size_t>(w)), displs(counts), rcounts(counts), rdispls(counts);
    for (int64_t off = 0; off < n; off += kPiece) {
      const int64_t len = std::min(kPiece, n - off);
      at::Tensor piece = flat.narrow(0, off, len);
      for (int r = 0, d = 0; r < w; ++r) {
        counts[size_t(r)] = int(len / w + (r < len % w ? 1 : 0));
        displs[size_t(r)] = d;
        d += counts[size_t(r)];
      }
      const int mine = counts[size_t(me)];
      for (int r = 0; r < w; ++r) {
        rcounts[size_t(r)] = mine;
        rdispls[size_t(r)] = r * mine;
      }
      at::Tensor recv = at::empty({w, int64_t(mine)}, t.options());
      mpi_ok(MPI_Alltoallv(piece.data_ptr(), counts.data(), displs.data(), mpi_type(t), recv.data_ptr(),
                           rcounts.data(), rdispls.data(), mpi_type(t), MPI_COMM_WORLD),
             "MPI_Alltoallv");
      at::Tensor dst = piece.narrow(0, displs[size_t(me)], mine);
      add_rows_in_order(recv, dst);
      mpi_ok(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, piece.data_ptr(), counts.data(),
                            displs.data(), mpi_type(t), MPI_COMM_WORLD),
             "MPI_Allgatherv");
    }
  }
  static void check(const at::Tensor& t) {
    HS_CHECK(t.is_contiguous(), "collective on a non-contiguous tensor");
    if (!t.device().is_cpu())
      throw Error("MPI collectives take CPU tensors, got one on " + t.device().str())
          .hint("GPU tensors go through NCCL: build with CUDA and NCCL (hsloth info shows both)");
  }
};

#ifdef HS_HAVE_NCCL
void nccl_check(ncclResult_t rc, const char* what) {
  if (rc != ncclSuccess && rc != ncclInProgress)
    throw Error(hs::str("NCCL ", what, " failed: ", ncclGetErrorString(rc)))
        .at(hs::str("rank ", Mpi::rank()))
        .hint("NCCL_DEBUG=WARN (or INFO) shows why; check that every rank sees its GPU and the network");
}
void cuda_check(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess) throw Error(hs::str("CUDA ", what, " failed: ", cudaGetErrorString(rc)));
}

ncclDataType_t nccl_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return ncclFloat32;
    case at::kDouble:
      return ncclFloat64;
    case at::kBFloat16:
      return ncclBfloat16;
    case at::kHalf:
      return ncclFloat16;
    case at::kLong:
      return ncclInt64;
    case at::kInt:
      return ncclInt32;
    case at::kByte:
      return ncclUint8;
    default:
      throw Error(hs::str("NCCL all-reduce of dtype ", t.scalar_type(), " is not supported"));
  }
}

// GPU tensors through one NCCL communicator (the unique id made on rank 0 and broadcast over MPI), on the
// tensor's current CUDA stream; CPU tensors (step statistics, stop flags) through MPI. Every collective is
// waited for with a deadline (HSLOTH_NCCL_TIMEOUT seconds, default 600): a peer that never arrives, or an
// asynchronous NCCL error, aborts the communicator and becomes an error on this rank, which ends the job
// through MPI_Abort instead of hanging.
class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(const at::Device& device) : device_(device) {
    const char* env = std::getenv("HSLOTH_NCCL_TIMEOUT");
    if (env && *env) {
      char* end = nullptr;
      timeout_s_ = std::strtod(env, &end);
      if (end == env || *end || timeout_s_ <= 0)
        throw Error(hs::str("HSLOTH_NCCL_TIMEOUT='", env, "' is not a positive number of seconds"));
    }
    c10::cuda::CUDAGuard guard(device_);
    check_distinct_gpus();
    ncclUniqueId id{};
    if (Mpi::rank() == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    std::string bytes = Mpi::broadcast(std::string(reinterpret_cast<const char*>(&id), sizeof id), 0);
    HS_CHECK(bytes.size() == sizeof id, "NCCL unique id broadcast has the wrong size");
    std::memcpy(&id, bytes.data(), sizeof id);
    // Non-blocking init so that a rank that never joins is a timeout, not a hang.
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    nccl_check(ncclCommInitRankConfig(&comm_, Mpi::world(), id, Mpi::rank(), &config), "ncclCommInitRank");
    wait_comm_ready("ncclCommInitRank");
    int v = 0;
    ncclGetVersion(&v);
    version_ = hs::str(v / 10000, ".", (v % 10000) / 100, ".", v % 100);
  }
  ~NcclCommunicator() override {
    // Unwinding from an error: a peer may be blocked in a collective, so finalize/destroy could wait forever.
    // Leave the communicator be; the error handler ends the job with MPI_Abort.
    if (!comm_ || aborted_ || std::uncaught_exceptions() > 0) return;
    // Finalize flushes outstanding work (bounded wait; errors at shutdown are not worth a throw), then free.
    ncclCommFinalize(comm_);
    ncclResult_t st = ncclInProgress;
    auto t0 = std::chrono::steady_clock::now();
    while (ncclCommGetAsyncError(comm_, &st) == ncclSuccess && st == ncclInProgress && elapsed(t0) < 10)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ncclCommDestroy(comm_);
  }
  int rank() const override { return Mpi::rank(); }
  int world() const override { return Mpi::world(); }
  std::string name() const override {
    return hs::str("NCCL ", version_, " (", Mpi::world(), " ranks, ", Mpi::local_world(),
                   " on this node; CPU tensors over MPI)");
  }
  void all_reduce_sum(at::Tensor& t) override {
    if (t.device().is_cpu()) return mpi_.all_reduce_sum(t);
    prepare(t);
    c10::cuda::CUDAGuard guard(t.device());
    cudaStream_t s = c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
    nccl_check(ncclAllReduce(t.data_ptr(), t.data_ptr(), size_t(t.numel()), nccl_type(t), ncclSum, comm_, s),
               "ncclAllReduce");
    wait_comm_ready("ncclAllReduce");
    wait_stream(s, "all-reduce");
  }
  void all_reduce_sum_async(at::Tensor& t) override {
    if (t.device().is_cpu()) return mpi_.all_reduce_sum(t);
    prepare(t);
    c10::cuda::CUDAGuard guard(t.device());
    cudaStream_t cur = c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
    if (!comm_stream_) {
      comm_stream_ = c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device_.index()).stream();
      cuda_check(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "cudaEventCreate");
      cuda_check(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreate");
    }
    // The gradient was produced on `cur`: the communicator's stream starts once it is there.
    cuda_check(cudaEventRecord(ready_, cur), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(comm_stream_, ready_, 0), "cudaStreamWaitEvent");
    nccl_check(ncclAllReduce(t.data_ptr(), t.data_ptr(), size_t(t.numel()), nccl_type(t), ncclSum, comm_,
                             comm_stream_),
               "ncclAllReduce");
    wait_comm_ready("ncclAllReduce");
    pending_ = true;
  }
  void wait_pending() override {
    if (!pending_) return;
    c10::cuda::CUDAGuard guard(device_);
    wait_stream(comm_stream_, "bucketed all-reduce");
    cuda_check(cudaEventRecord(done_, comm_stream_), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(c10::cuda::getCurrentCUDAStream(device_.index()).stream(), done_, 0),
               "cudaStreamWaitEvent");
    pending_ = false;
  }
  bool overlaps() const override { return true; }
  void reduce_scatter_sum(const at::Tensor& in, at::Tensor& out) override {
    if (in.device().is_cpu()) return mpi_.reduce_scatter_sum(in, out);
    prepare(in);
    prepare(out);
    HS_CHECK(in.numel() == out.numel() * world() && in.scalar_type() == out.scalar_type(),
             "reduce-scatter: ", in.numel(), " values in, ", out.numel(), " out");
    c10::cuda::CUDAGuard guard(in.device());
    cudaStream_t s = c10::cuda::getCurrentCUDAStream(in.device().index()).stream();
    nccl_check(ncclReduceScatter(in.data_ptr(), out.data_ptr(), size_t(out.numel()), nccl_type(in), ncclSum,
                                 comm_, s),
               "ncclReduceScatter");
    wait_comm_ready("ncclReduceScatter");
    wait_stream(s, "reduce-scatter");
  }
  void all_gather(const at::Tensor& in, at::Tensor& out) override {
    if (in.device().is_cpu()) return mpi_.all_gather(in, out);
    prepare(in);
    prepare(out);
    HS_CHECK(out.numel() == in.numel() * world() && in.scalar_type() == out.scalar_type(),
             "all-gather: ", in.numel(), " values in, ", out.numel(), " out");
    c10::cuda::CUDAGuard guard(in.device());
    cudaStream_t s = c10::cuda::getCurrentCUDAStream(in.device().index()).stream();
    nccl_check(ncclAllGather(in.data_ptr(), out.data_ptr(), size_t(in.nbytes()), ncclUint8, comm_, s),
               "ncclAllGather");
    wait_comm_ready("ncclAllGather");
    wait_stream(s, "all-gather");
  }
  void broadcast(at::Tensor& t, int root) override {
    if (t.device().is_cpu()) return mpi_.broadcast(t, root);
    prepare(t);
    c10::cuda::CUDAGuard guard(t.device());
    cudaStream_t s = c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
    nccl_check(ncclBroadcast(t.data_ptr(), t.data_ptr(), size_t(t.nbytes()), ncclUint8, root, comm_, s),
               "ncclBroadcast");
    wait_comm_ready("ncclBroadcast");
    wait_stream(s, "broadcast");
  }
  void barrier() override { Mpi::barrier(); }

 private:
  // Two ranks on one GPU is a launch mistake NCCL reports obscurely; name the ranks instead.
  void check_distinct_gpus() const {
    char bus[32] = {0};
    cuda_check(cudaDeviceGetPCIBusId(bus, sizeof bus, device_.index()), "cudaDeviceGetPCIBusId");
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    const std::string mine = std::string(host) + " GPU " + bus;
    auto all = Mpi::allgather(mine);
    for (size_t r = 0; r < all.size(); ++r)
      if (int(r) != Mpi::rank() && all[r] == mine)
        throw Error(hs::str("ranks ", std::min<size_t>(r, size_t(Mpi::rank())), " and ",
                            std::max<size_t>(r, size_t(Mpi::rank())), " both use ", mine))
            .hint("one rank per GPU: do not set CUDA_VISIBLE_DEVICES to the same GPU for every rank, and "
                  "start at most as many ranks per node as it has GPUs");
  }
  void prepare(const at::Tensor& t) const {
    HS_CHECK(t.is_contiguous(), "collective on a non-contiguous tensor");
    if (t.device() != device_)
      throw Error("NCCL collective on " + t.device().str() + ", but this rank's communicator is on " +
                  device_.str());
  }
  [[noreturn]] void fail(const std::string& what) {
    ncclCommAbort(comm_);
    aborted_ = true;
    throw Error(what)
        .at(hs::str("rank ", Mpi::rank(), " on ", device_.str()))
        .hint("another rank probably failed or stalled (its error is above/below); NCCL_DEBUG=WARN shows "
              "network problems; HSLOTH_NCCL_TIMEOUT sets the deadline in seconds");
  }
  // Non-blocking communicators return ncclInProgress while an operation is being enqueued.
  void wait_comm_ready(const char* what) {
    auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      ncclResult_t st = ncclSuccess;
      nccl_check(ncclCommGetAsyncError(comm_, &st), "ncclCommGetAsyncError");
      if (st == ncclSuccess) return;
      if (st != ncclInProgress) fail(hs::str("NCCL ", what, ": ", ncclGetErrorString(st)));
      if (elapsed(t0) > timeout_s_)
        fail(hs::str("NCCL ", what, " did not complete within ", timeout_s_, " s"));
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
  // Waits for the stream with a deadline, checking NCCL's asynchronous error state while it runs.
  void wait_stream(cudaStream_t s, const char* what) {
    auto t0 = std::chrono::steady_clock::now();
    int spins = 0;
    for (;;) {
      cudaError_t rc = cudaStreamQuery(s);
      if (rc == cudaSuccess) return;
      if (rc != cudaErrorNotReady) cuda_check(rc, "stream wait after an NCCL collective");
      ncclResult_t st = ncclSuccess;
      ncclCommGetAsyncError(comm_, &st);
      if (st != ncclSuccess && st != ncclInProgress)
        fail(hs::str("NCCL ", what, " failed: ", ncclGetErrorString(st)));
      if (elapsed(t0) > timeout_s_)
        fail(hs::str("NCCL ", what, " did not finish within ", timeout_s_, " s"));
      if (++spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  static double elapsed(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  at::Device device_;
  ncclComm_t comm_ = nullptr;
  bool aborted_ = false;
  cudaStream_t comm_stream_ = nullptr;  // async all-reduces (from the pool: lives as long as the process)
  cudaEvent_t ready_ = nullptr, done_ = nullptr;
  bool pending_ = false;
  double timeout_s_ = 600;
  std::string version_;
  MpiCommunicator mpi_;
};
#endif

}  // namespace

at::Device rank_device() {
  if (!torch::cuda::is_available()) return at::Device(at::kCPU);
  const int n = int(torch::cuda::device_count());
  const int local = Mpi::local_rank(), local_world = Mpi::local_world();
  if (n > 1 && local_world > n)
    throw Error(hs::str(local_world, " ranks on this node but only ", n, " GPUs are visible"))
        .hint("start one rank per GPU (mpirun -np <GPUs per node> / srun --ntasks-per-node=<GPUs>)");
  at::Device d(at::kCUDA, at::DeviceIndex(local % n));
  c10::impl::getDeviceGuardImpl(at::kCUDA)->setDevice(d);  // device-agnostic: no CUDA headers needed
  return d;
}

std::unique_ptr<Communicator> make_communicator(const at::Device& device) {
  if (!Mpi::active() || Mpi::world() == 1) return std::make_unique<LocalCommunicator>();
  if (device.is_cpu()) return std::make_unique<MpiCommunicator>();
#ifdef HS_HAVE_NCCL
  return std::make_unique<NcclCommunicator>(device);
#else
  throw Error("multi-rank GPU training needs NCCL, and this build has none")
      .hint("install NCCL (libnccl-dev, or NCCL_ROOT=...) and rebuild; `hsloth info` shows what was found");
#endif
}

}  // namespace hs::dist
