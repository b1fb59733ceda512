// MPI bootstrap. vdp initializes MPI only when an MPI launcher started the process (mpirun, srun,
// or VDP_FORCE_MPI=1), so `vdp-train` alone runs as world size 1 without any MPI daemon.
#pragma once

#include <mpi.h>

#include <string>

namespace vdp {

class MpiEnv {
 public:
  // Initializes MPI (MPI_THREAD_FUNNELED) if launched by MPI; idempotent. Call once from main.
  // `startup_timeout_s` > 0: a rank still in MPI's start-up after that many seconds (peers that
  // never arrive) prints one line and exits 4.
  static MpiEnv& init(int* argc, char*** argv, double startup_timeout_s = 0);
  // The environment after init() (or a single-process one if init was never called).
  static MpiEnv& get();
  // True when the environment looks like an MPI launch (used before MPI_Init, e.g. to decide who
  // prints a configuration error).
  static bool launched_by_mpi();
  // The program name that starts every message line ("vdp-train" unless vdp::run was told otherwise).
  static void set_program(const std::string& name);
  static const char* program();
  // Rank as the launcher's environment tells it, before MPI_Init (0 if unknown).
  static int launcher_rank();

  bool active() const { return active_; }  // MPI initialized by us
  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }  // rank among the processes of this host
  int local_size() const { return local_size_; }
  const std::string& host() const { return host_; }
  MPI_Comm world() const { return world_; }

  // Ends every rank of the job with `code` (MPI_Abort); at W=1 exits the process.
  [[noreturn]] void abort(int code) const;
  // Prints "PROGRAM: KIND [rank r of W on HOST]: MESSAGE" (no rank part at W=1) as one line on
  // stderr, then abort(code).
  [[noreturn]] void fail(const char* kind, const std::string& message, int code) const;
  // MPI_Finalize if we initialized MPI. Safe to call more than once.
  void finalize();

 private:
  MpiEnv() = default;
  bool active_ = false;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  std::string host_;
  MPI_Comm world_ = MPI_COMM_NULL;
};

// VDP_MPI_CHECK: a failed MPI call throws vdp::InternalError naming the call, rank, host, file and line.
void mpi_check(int code, const char* call, const char* file, int line);
#define VDP_MPI_CHECK(call) ::vdp::mpi_check((call), #call, __FILE__, __LINE__)

}  // namespace vdp
