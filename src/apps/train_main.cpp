// vdp-train: a thin main over the library. Parses and validates the configuration before MPI or
// CUDA start; any error becomes one line on stderr. Bad input exits 2; a failure on any rank ends
// the whole job (MPI_Abort) with that rank's message.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <thread>

#include "vdp/config/config.h"
#include "vdp/core/error.h"
#include "vdp/dist/factory.h"
#include "vdp/dist/mpi_env.h"
#include "vdp/train/trainer.h"

namespace {

[[noreturn]] void fail(const vdp::MpiEnv& env, const char* kind, const char* what, int code) {
  if (env.size() > 1)
    std::fprintf(stderr, "vdp-train: %s [rank %d of %d on %s]: %s\n", kind, env.rank(), env.size(),
                 env.host().c_str(), what);
  else
    std::fprintf(stderr, "vdp-train: %s: %s\n", kind, what);
  env.abort(code);
}

}  // namespace

int main(int argc, char** argv) {
  vdp::Config cfg;
  try {
    vdp::ParseResult parsed = vdp::parse_config(argc, argv);
    if (parsed.exit_now) {
      std::fputs(parsed.text.c_str(), stdout);
      return 0;
    }
    cfg = parsed.config;
  } catch (const std::exception& e) {
    // Every rank sees the same configuration; one of them says what is wrong.
    if (vdp::MpiEnv::launcher_rank() == 0) std::fprintf(stderr, "vdp-train: error: %s\n", e.what());
    return vdp::kExitBadInput;
  }
  if (cfg.print_config) {
    if (vdp::MpiEnv::launcher_rank() == 0) std::fputs(vdp::config_to_ini(cfg).c_str(), stdout);
    return 0;
  }

  vdp::MpiEnv& env = vdp::MpiEnv::init(&argc, &argv);
  // Ranks sharing a host share its cores: without an explicit OMP_NUM_THREADS each rank takes an
  // equal part, so W ranks on one machine do not oversubscribe it W-fold.
  if (!std::getenv("OMP_NUM_THREADS"))
    at::set_num_threads(std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / env.local_size()));
  try {
    if (cfg.dry_run) {
      vdp::Task task = vdp::make_task(cfg);
      vdp::Plan plan({task.train->size(), cfg.global_batch, env.size(), cfg.micro_batch, cfg.seed, cfg.drop_last});
      if (env.rank() == 0) std::fputs(plan.summary().c_str(), stdout);
      env.finalize();
      return 0;
    }
    auto comm = vdp::make_communicator(cfg, env);
    vdp::Task task = vdp::make_task(cfg);
    vdp::Trainer trainer(cfg, task, comm);
    if (env.rank() == 0) {
      std::printf("vdp-train: %s on %s, W=%d ranks (%s), %s\n", vdp::to_string(cfg.model), vdp::to_string(cfg.dataset),
                  comm->size(), comm->name().c_str(), comm->device().str().c_str());
      std::fputs(trainer.plan().summary().c_str(), stdout);
      if (!trainer.resumed_from().empty())
        std::printf("resuming from %s at step %lld\n", trainer.resumed_from().c_str(),
                    static_cast<long long>(trainer.start_step()));
      else if (cfg.resume == "auto")
        std::printf("no checkpoint in %s yet: starting fresh\n", cfg.checkpoint_dir.c_str());
      std::fflush(stdout);
      std::fflush(stdout);
    }
    vdp::TrainResult r = trainer.fit();
    if (env.rank() == 0) {
      std::printf("done: %lld steps, last loss %.6f, params_sum %.10g, params_l2 %.10g", static_cast<long long>(r.steps),
                  r.last_loss, r.params_sum, r.params_l2);
      if (r.test.accuracy == r.test.accuracy) std::printf(", test_accuracy %.4f", r.test.accuracy);
      std::printf(", %.0f samples/s, %.1fs training\n", r.samples_per_second, r.train_seconds);
    }
  } catch (const vdp::UserError& e) {
    fail(env, "error", e.what(), vdp::kExitBadInput);
  } catch (const std::exception& e) {
    fail(env, "failed", e.what(), vdp::kExitFailure);
  }
  env.finalize();
  return 0;
}
