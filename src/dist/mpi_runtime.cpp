// MPI runtime (see mpi_runtime.h): init/finalize once, node-local rank by MPI_Comm_split_type, chunked byte
// collectives (64-bit sizes), MPI_Abort; everything is a world of one before/without init.
#include "dist/mpi_runtime.h"

#include <mpi.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "core/log.h"

namespace hs::dist {
namespace {
int g_rank = 0, g_world = 1, g_local_rank = 0, g_local_world = 1;
bool g_we_initialized = false;

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw Error(str("MPI call failed: ", what, ": ", std::string(msg, size_t(len))));
  }
}
#define HS_MPI(call) check((call), #call)

constexpr int64_t kChunk = 1 << 30;  // MPI counts are int: move big payloads in 1 GiB pieces
}  // namespace

bool Mpi::active() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

void Mpi::init() {
  if (!active()) {
    int provided = 0;
    HS_MPI(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
    g_we_initialized = true;
  }
  HS_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &g_rank));
  HS_MPI(MPI_Comm_size(MPI_COMM_WORLD, &g_world));
  MPI_Comm local;
  HS_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &local));
  HS_MPI(MPI_Comm_rank(local, &g_local_rank));
  HS_MPI(MPI_Comm_size(local, &g_local_world));
  MPI_Comm_free(&local);
  // Errors come back as codes so that they become hs::Error with context instead of an MPI abort.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  log::set_rank(g_rank, g_world);
  check_launcher();
}

// Slurm's own variables, when present: `srun` without an MPI plugin starts N singletons (world 1 each) that
// would all write the same run.dir; refuse that, and say where the job runs.
void Mpi::check_launcher() {
  auto env = [](const char* k) -> std::string {
    const char* v = std::getenv(k);
    return v ? v : "";
  };
  const std::string step_tasks = env("SLURM_STEP_NUM_TASKS"), procid = env("SLURM_PROCID");
  if (g_world == 1 && !step_tasks.empty() && std::atoi(step_tasks.c_str()) > 1 && !env("SLURM_STEP_ID").empty())
    throw Error(str("Slurm started ", step_tasks, " tasks (this is task ", procid,
                    ") but MPI sees each as a world of 1: srun did not connect them"))
        .hint("use srun --mpi=pmix (srun --mpi=list shows the plugins), or mpirun inside the allocation "
              "(slurm/train.sbatch does either)");
  if (!env("SLURM_JOB_ID").empty() && g_rank == 0)
    log::info("slurm job ", env("SLURM_JOB_ID"), env("SLURM_RESTART_COUNT").empty() ? "" : " (restart " + env("SLURM_RESTART_COUNT") + ")",
              ", ", g_world, " ranks on ", env("SLURM_JOB_NUM_NODES").empty() ? "?" : env("SLURM_JOB_NUM_NODES"),
              " node(s): ", env("SLURM_JOB_NODELIST"));
}

void Mpi::finalize() {
  if (active() && g_we_initialized) MPI_Finalize();
}

int Mpi::rank() { return g_rank; }
int Mpi::world() { return g_world; }
int Mpi::local_rank() { return g_local_rank; }
int Mpi::local_world() { return g_local_world; }

void Mpi::barrier() {
  if (active() && g_world > 1) HS_MPI(MPI_Barrier(MPI_COMM_WORLD));
}

void Mpi::abort(int code) {
  if (active() && g_world > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

std::vector<std::string> Mpi::allgather(const std::string& bytes) {
  if (!active() || g_world == 1) return {bytes};
  int64_t mine = int64_t(bytes.size());
  std::vector<int64_t> sizes(static_cast<size_t>(g_world));
  HS_MPI(MPI_Allgather(&mine, 1, MPI_INT64_T, sizes.data(), 1, MPI_INT64_T, MPI_COMM_WORLD));
  std::vector<std::string> out(static_cast<size_t>(g_world));
  for (int r = 0; r < g_world; ++r) out[size_t(r)].resize(size_t(sizes[size_t(r)]));
  // Every rank broadcasts its own bytes in chunks: simple, and bounded message sizes.
  for (int r = 0; r < g_world; ++r) {
    if (r == g_rank) out[size_t(r)] = bytes;
    for (int64_t off = 0; off < sizes[size_t(r)]; off += kChunk) {
      int n = int(std::min<int64_t>(kChunk, sizes[size_t(r)] - off));
      HS_MPI(MPI_Bcast(out[size_t(r)].data() + off, n, MPI_BYTE, r, MPI_COMM_WORLD));
    }
  }
  return out;
}

std::vector<std::string> Mpi::gather(const std::string& bytes, int root) {
  if (!active() || g_world == 1) return {bytes};
  int64_t mine = int64_t(bytes.size());
  std::vector<int64_t> sizes(static_cast<size_t>(g_world));
  HS_MPI(MPI_Gather(&mine, 1, MPI_INT64_T, sizes.data(), 1, MPI_INT64_T, root, MPI_COMM_WORLD));
  std::vector<std::string> out;
  if (g_rank == root) {
    out.resize(static_cast<size_t>(g_world));
    for (int r = 0; r < g_world; ++r) {
      if (r == root) {
        out[size_t(r)] = bytes;
        continue;
      }
      out[size_t(r)].resize(size_t(sizes[size_t(r)]));
      for (int64_t off = 0; off < sizes[size_t(r)]; off += kChunk) {
        int n = int(std::min<int64_t>(kChunk, sizes[size_t(r)] - off));
        HS_MPI(MPI_Recv(out[size_t(r)].data() + off, n, MPI_BYTE, r, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
      }
    }
  } else {
    for (int64_t off = 0; off < mine; off += kChunk) {
      int n = int(std::min<int64_t>(kChunk, mine - off));
      HS_MPI(MPI_Send(bytes.data() + off, n, MPI_BYTE, root, 7, MPI_COMM_WORLD));
    }
  }
  return out;
}

std::string Mpi::broadcast(const std::string& bytes, int root) {
  if (!active() || g_world == 1) return bytes;
  int64_t size = int64_t(bytes.size());
  HS_MPI(MPI_Bcast(&size, 1, MPI_INT64_T, root, MPI_COMM_WORLD));
  std::string out = g_rank == root ? bytes : std::string(size_t(size), '\0');
  for (int64_t off = 0; off < size; off += kChunk) {
    int n = int(std::min<int64_t>(kChunk, size - off));
    HS_MPI(MPI_Bcast(out.data() + off, n, MPI_BYTE, root, MPI_COMM_WORLD));
  }
  return out;
}

int64_t Mpi::allreduce_sum(int64_t value) {
  if (!active() || g_world == 1) return value;
  int64_t out = 0;
  HS_MPI(MPI_Allreduce(&value, &out, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD));
  return out;
}

std::string Mpi::library_version() {
  char buf[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(buf, &len);
  std::string v(buf, size_t(len));
  while (!v.empty() && (v.back() == '\n' || v.back() == '\0')) v.pop_back();
  return v;
}

}  // namespace hs::dist
