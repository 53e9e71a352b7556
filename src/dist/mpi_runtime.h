// The MPI process runtime, written once: start-up (MPI_Init_thread), rank/world, the node-local rank
// from MPI_Comm_split_type(MPI_COMM_TYPE_SHARED), byte-level collectives used outside the gradient path
// (prep gathers its tokenized pieces, the trainer broadcasts plans), and MPI_Abort for the top-level
// error handler. Functions work before/without init as a world of one (rank 0), so single-process tools
// and tests need no mpirun.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hs::dist {

class Mpi {
 public:
  // Initializes MPI once (MPI_THREAD_FUNNELED) and sets hs::log's rank. Safe to call again.
  static void init();
  static void finalize();
  static bool active();  // initialized and not finalized
  static int rank();
  static int world();
  static int local_rank();  // rank within this node
  static int local_world();
  static void barrier();
  // Ends the whole job (MPI_Abort) if MPI is active with world > 1; otherwise returns.
  static void abort(int code);
  // Every rank's bytes, in rank order, on every rank (64-bit sizes; large payloads are chunked).
  static std::vector<std::string> allgather(const std::string& bytes);
  // Every rank's bytes, in rank order, on `root` only (other ranks get an empty vector): rank 0 receives one
  // rank at a time, so no rank but the root ever holds more than its own payload.
  static std::vector<std::string> gather(const std::string& bytes, int root = 0);
  // Rank `root`'s bytes on every rank.
  static std::string broadcast(const std::string& bytes, int root = 0);
  // Sum of an integer over ranks.
  static int64_t allreduce_sum(int64_t value);
  // "Open MPI v4.1.4, ..." from MPI_Get_library_version (works without init).
  static std::string library_version();

 private:
  static void check_launcher();
};

}  // namespace hs::dist
