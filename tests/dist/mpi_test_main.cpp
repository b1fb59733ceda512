// main() of the multi-rank tests, launched by CTest as `mpirun -np W vdp_mpi_tests`. Initializes
// MPI through vdp's bootstrap; only rank 0 prints GoogleTest's progress, but every rank's failures
// are printed, and the process exits non-zero on any rank that failed.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include "vdp/dist/mpi_env.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  vdp::MpiEnv& env = vdp::MpiEnv::init(&argc, &argv);
  at::set_num_threads(1);
  if (env.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    struct FailurePrinter : ::testing::EmptyTestEventListener {
      int rank;
      explicit FailurePrinter(int r) : rank(r) {}
      void OnTestPartResult(const ::testing::TestPartResult& r) override {
        if (r.failed()) std::fprintf(stderr, "[rank %d] %s:%d: %s\n", rank, r.file_name(), r.line_number(), r.message());
      }
    };
    listeners.Append(new FailurePrinter(env.rank()));
  }
  int rc = RUN_ALL_TESTS();
  // Agree on the verdict so that a failure on any rank fails the run everywhere.
  int any = rc != 0, all = 0;
  if (env.active()) MPI_Allreduce(&any, &all, 1, MPI_INT, MPI_MAX, env.world());
  else all = any;
  env.finalize();
  return all;
}
