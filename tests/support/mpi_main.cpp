// main() for tests that run under mpiexec: every rank runs every test; the exit code is non-zero on every
// rank if any rank failed, so mpiexec reports the failure. Ranks > 0 print only failures.
#include <gtest/gtest.h>
#include <mpi.h>

#include "dist/mpi_runtime.h"

namespace {
class QuietListener : public ::testing::EmptyTestEventListener {
 public:
  explicit QuietListener(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (r.failed())
      std::fprintf(stderr, "[rank %d] %s:%d: failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?",
                   r.line_number(), r.summary());
  }

 private:
  int rank_;
};
}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  hs::dist::Mpi::init();
  int rank = hs::dist::Mpi::rank();
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new QuietListener(rank));
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  hs::dist::Mpi::finalize();
  return any;
}
