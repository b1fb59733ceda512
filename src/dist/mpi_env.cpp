#include "vdp/dist/mpi_env.h"

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "vdp/core/error.h"

namespace vdp {
namespace {

MpiEnv* g_env = nullptr;

const char* first_env(std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (const char* v = std::getenv(n)) return v;
  return nullptr;
}

}  // namespace

bool MpiEnv::launched_by_mpi() {
  if (const char* f = std::getenv("VDP_FORCE_MPI")) return std::string(f) == "1";
  return first_env({"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"}) != nullptr;
}

int MpiEnv::launcher_rank() {
  const char* v = first_env({"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"});
  return v ? std::atoi(v) : 0;
}

MpiEnv& MpiEnv::get() {
  static MpiEnv single;
  return g_env ? *g_env : single;
}

MpiEnv& MpiEnv::init(int* argc, char*** argv, double startup_timeout_s) {
  static MpiEnv env;
  if (g_env) return *g_env;
  g_env = &env;
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  env.host_ = host;
  if (!launched_by_mpi()) return env;

  // A watchdog for MPI's start-up, which has no timeout of its own.
  struct Watchdog {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
  };
  auto dog = std::make_shared<Watchdog>();
  if (startup_timeout_s > 0)
    std::thread([dog, startup_timeout_s] {
      std::unique_lock<std::mutex> lock(dog->m);
      if (dog->cv.wait_for(lock, std::chrono::duration<double>(startup_timeout_s), [&] { return dog->done; })) return;
      std::fprintf(stderr, "%s: timeout: MPI's start-up did not complete within --timeout %g s (a rank failed before "
                   "starting MPI, or never started); exit %d\n", program(), startup_timeout_s, kExitTimeout);
      std::fflush(stderr);
      std::_Exit(kExitTimeout);
    }).detach();
  struct Disarm {
    std::shared_ptr<Watchdog> dog;
    ~Disarm() {
      std::lock_guard<std::mutex> lock(dog->m);
      dog->done = true;
      dog->cv.notify_all();
    }
  } disarm{dog};
  int provided = 0;
  VDP_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  env.active_ = true;
  // Errors come back as codes so VDP_MPI_CHECK can name the call; a dead peer still ends the job
  // through mpirun, and our own failures through abort().
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  env.world_ = MPI_COMM_WORLD;
  VDP_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &env.rank_));
  VDP_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &env.size_));
  MPI_Comm local;
  VDP_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, env.rank_, MPI_INFO_NULL, &local));
  VDP_MPI_CHECK(MPI_Comm_rank(local, &env.local_rank_));
  VDP_MPI_CHECK(MPI_Comm_size(local, &env.local_size_));
  MPI_Comm_free(&local);
  return env;
}

void MpiEnv::abort(int code) const {
  std::fflush(stdout);
  std::fflush(stderr);
  if (active_ && size_ > 1) {
    // MPI_Abort asks the launcher to end the job and waits for it. When the launcher is already
    // ending the job (another rank aborted first) that wait never returns while the launcher gives
    // this rank its SIGKILL grace period (long under vdp's launchers, for graceful stops), so this
    // rank leaves on its own a few seconds later.
    std::thread([code] {
      std::this_thread::sleep_for(std::chrono::seconds(3));
      std::_Exit(code);
    }).detach();
    MPI_Abort(MPI_COMM_WORLD, code);
  }
  std::_Exit(code);
}

namespace {
std::string& program_name() {
  static std::string name = "vdp-train";
  return name;
}
}  // namespace

void MpiEnv::set_program(const std::string& name) { program_name() = name; }
const char* MpiEnv::program() { return program_name().c_str(); }

void MpiEnv::fail(const char* kind, const std::string& message, int code) const {
  std::string line = message;
  for (char& ch : line)
    if (ch == '\n') ch = ' ';
  if (size_ > 1)
    std::fprintf(stderr, "%s: %s [rank %d of %d on %s]: %s\n", program(), kind, rank_, size_, host_.c_str(), line.c_str());
  else
    std::fprintf(stderr, "%s: %s: %s\n", program(), kind, line.c_str());
  abort(code);
}

void MpiEnv::finalize() {
  if (!active_) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
  active_ = false;
}

void mpi_check(int code, const char* call, const char* file, int line) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(code, text, &len);
  const MpiEnv& env = MpiEnv::get();
  throw InternalError(detail::format("MPI call failed on rank ", env.rank(), " (", env.host(), ") at ", file, ":",
                                     line, ": ", call, ": ", text));
}

}  // namespace vdp
