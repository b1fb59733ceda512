// run: parse, start MPI, build the task, train, report; errors become one line and an exit
// code on every rank (run/run.h). Options are parsed and validated before MPI or CUDA start. A
// failure on one rank ends the whole job (abort of the communicator, then MPI_Abort) before anything
// could wait on communication in flight.
#include "vdp/run/run.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "vdp/core/error.h"
#include "vdp/core/error_line.h"
#include "vdp/dist/factory.h"
#include "vdp/dist/mpi_env.h"
#include "vdp/device/determinism.h"
#include "vdp/run/preemption.h"

namespace vdp {

namespace {

// The one line of an exception: LibTorch's messages carry a backtrace and context lines after
// the first.
std::string first_line(const std::exception& e) { return error_line(e); }

// Sorts an exception into its kind and exit code: vdp's own errors carry theirs (core/error.h); LibTorch's and the standard library's are sorted here.
std::pair<const char*, int> classify(const std::exception& e) {
  if (auto* v = dynamic_cast<const Error*>(&e)) return {v->kind(), v->exit_code()};
  if (is_nondeterministic_op_error(e)) return {"error", kExitBadInput};
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e) || dynamic_cast<const std::bad_alloc*>(&e))
    return {"out of memory", kExitIo};
  return {"failed", kExitFailure};
}

// Where the ranks run, for the start-up lines: "node1 (ranks 0-1), node2 (ranks 2-3)", hosts in the
// order of their first rank, runs of consecutive ranks joined. Every rank takes part (W broadcasts).
std::string host_summary(Communicator& comm, const std::string& mine) {
  std::vector<std::pair<std::string, std::vector<int>>> hosts;
  for (int r = 0; r < comm.size(); ++r) {
    const std::string h = comm.broadcast_string(mine, r);
    auto it = std::find_if(hosts.begin(), hosts.end(), [&](const auto& e) { return e.first == h; });
    if (it == hosts.end()) it = hosts.insert(hosts.end(), {h, {}});
    it->second.push_back(r);
  }
  std::string out;
  for (const auto& [host, ranks] : hosts) {
    if (!out.empty()) out += ", ";
    out += host + (ranks.size() == 1 ? " (rank " : " (ranks ");
    for (size_t i = 0; i < ranks.size();) {
      size_t j = i;
      while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
      if (i > 0) out += ",";
      out += std::to_string(ranks[i]) + (j > i ? "-" + std::to_string(ranks[j]) : "");
      i = j + 1;
    }
    out += ")";
  }
  return out;
}

// Every rank's action (0 train, 1 --help, 2 --print-config, 3 --dry-run) must be the same: one
// all-reduce of (action, -action) under MAX, polled against --timeout.
void agree_on_action(MpiEnv& env, int action, double timeout_s) {
  if (!env.active() || env.size() == 1) return;
  int mine[2] = {action, -action}, all[2] = {0, 0};
  MPI_Request req;
  VDP_MPI_CHECK(MPI_Iallreduce(mine, all, 2, MPI_INT, MPI_MAX, env.world(), &req));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  for (int done = 0;;) {
    VDP_MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
    if (done) break;
    if (std::chrono::steady_clock::now() > deadline)
      throw TimeoutError("start-up: not every rank arrived within --timeout " + std::to_string(timeout_s) + " s");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  static const char* const names[] = {"train", "--help", "--print-config", "--dry-run"};
  if (all[0] != -all[1])
    throw AgreedError(std::string("ranks disagree: some rank was started with ") + names[all[0]] +
                      " and another " + (-all[1] == 0 ? "to train" : std::string("with ") + names[-all[1]]) +
                      "; start every rank with the same options");
}

}  // namespace

int run(int argc, char** argv, const RunSpec& spec) {
  // A closed stdout or stderr (`vdp-train | head`) makes a write fail, not the process die (training
  // goes on; the metrics file and checkpoints are the record). A stop signal during start-up (from
  // the parsed options on) is held until the first window ends (exit 5, with a checkpoint if asked).
  std::signal(SIGPIPE, SIG_IGN);
  const char* prog = spec.program.c_str();
  MpiEnv::set_program(spec.program);
  ParseSettings settings;
  settings.program = spec.program;
  settings.defaults = spec.defaults;
  settings.own_task = static_cast<bool>(spec.make_task);
  auto build_task = [&](const Config& c) { return spec.make_task ? spec.make_task(c) : make_task(c); };

  Config cfg;
  std::string help;  // --help's text
  try {
    ParseResult parsed = parse_config(argc, argv, settings);
    if (parsed.exit_now && !MpiEnv::launched_by_mpi()) {
      std::fputs(parsed.text.c_str(), stdout);
      return 0;
    }
    if (parsed.exit_now) help = parsed.text;
    else cfg = parsed.config;
  } catch (const std::exception& e) {
    // Before MPI starts the ranks cannot compare notes. Usually every rank has the same options and
    // rank 0 speaks for all; another rank waits a moment first: if rank 0 failed too, the launcher
    // ends the job on rank 0's exit before this rank prints, and if only this rank was started with
    // other options (an MPMD launch), its line is the one that says so.
    const int rank = MpiEnv::launcher_rank();
    if (rank != 0) std::this_thread::sleep_for(std::chrono::seconds(2));
    if (rank == 0) std::fprintf(stderr, "%s: error: %s\n", prog, first_line(e).c_str());
    else std::fprintf(stderr, "%s: error [rank %d]: %s\n", prog, rank, first_line(e).c_str());
    return kExitBadInput;
  }
  // From here a stop signal is held for a window boundary (before: the launcher's SIGTERM must still
  // end a rank that is about to report bad options).
  install_stop_handlers();
  if (cfg.print_config && !MpiEnv::launched_by_mpi()) {
    std::fputs(config_to_ini(cfg).c_str(), stdout);
    return 0;
  }

  // MPI's start-up is bounded by --timeout too: a rank that never arrives (it failed before MPI,
  // or its launcher lost it) ends the job with exit 4 instead of a wait without end.
  MpiEnv& env = MpiEnv::init(&argc, &argv, help.empty() ? cfg.timeout : 600.0);
  install_stop_handlers();  // again: MPI's start-up may have installed its own
  if (cfg.deterministic) enable_determinism();  // before the first cuBLAS handle
  // Ranks sharing a host share its cores: without an explicit OMP_NUM_THREADS each rank takes an
  // equal part, so W ranks on one machine do not oversubscribe it W-fold.
  if (!std::getenv("OMP_NUM_THREADS"))
    at::set_num_threads(std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / env.local_size()));

  // Held outside the try block: on failure the handler aborts while they are still alive, so no
  // destructor runs (and none can wait on a peer) before MPI_Abort.
  std::shared_ptr<Communicator> comm;
  std::unique_ptr<Trainer> trainer;
  try {
    // Under a launcher every rank does the same thing: a rank that alone asked for --help,
    // --print-config or --dry-run is a launch whose ranks differ (one collective, bounded).
    const int action = !help.empty() ? 1 : cfg.print_config ? 2 : cfg.dry_run ? 3 : 0;
    agree_on_action(env, action, help.empty() ? cfg.timeout : 600.0);
    if (!help.empty() || cfg.print_config) {
      if (env.rank() == 0) std::fputs(help.empty() ? config_to_ini(cfg).c_str() : help.c_str(), stdout);
      std::fflush(stdout);
      env.finalize();
      return 0;
    }
    if (cfg.dry_run) {
      Task task = build_task(cfg);
      // --micro-batch auto: m is measured when training starts; the plan shown is for K = 1.
      const int64_t m = cfg.micro_batch > 0 ? cfg.micro_batch : (cfg.global_batch + env.size() - 1) / env.size();
      if (cfg.micro_batch == 0 && env.rank() == 0)
        std::printf("--micro-batch auto: m and K are chosen when training starts, by measuring micro-steps on the "
                    "model's device; the plan below is for m = %lld (K = 1), the most the search may choose\n",
                    static_cast<long long>(m));
      Plan plan({task.train->size(), cfg.global_batch, env.size(), m, cfg.seed, cfg.drop_last, cfg.shuffle});
      if (env.rank() == 0) std::fputs(plan.summary().c_str(), stdout);
      if (env.rank() == 0 && cfg.print_ids) {
        // One line per slot of the first epoch: where every sample goes, in the trainer's order.
        for (int64_t s = 0; s < plan.steps_per_epoch(); ++s)
          for (int64_t k = 0; k < plan.micro_steps(s); ++k)
            for (int64_t r = 0; r < env.size(); ++r) {
              std::printf("step %lld micro-step %lld rank %lld:", static_cast<long long>(s), static_cast<long long>(k),
                          static_cast<long long>(r));
              for (int64_t id : plan.slot(0, s, k, r)) std::printf(" %lld", static_cast<long long>(id));
              std::printf("\n");
            }
      }
      env.finalize();
      return 0;
    }
    comm = make_communicator(cfg, env);
    trainer = std::make_unique<Trainer>(cfg, build_task(cfg), comm);
    trainer->stop_on(stop_signal);
    const std::string hosts = comm->size() > 1 ? host_summary(*comm, env.host()) : std::string();
    if (env.rank() == 0) {
      if (spec.make_task)
        std::printf("%s: W=%d ranks (%s), %s\n", prog, comm->size(), comm->name().c_str(), comm->device().str().c_str());
      else
        std::printf("%s: %s on %s, W=%d ranks (%s), %s\n", prog, to_string(cfg.model), to_string(cfg.dataset),
                    comm->size(), comm->name().c_str(), comm->device().str().c_str());
      if (!hosts.empty()) std::printf("hosts: %s\n", hosts.c_str());
      if (!cfg.metrics.empty()) std::printf("metrics: %s\n", cfg.metrics.c_str());
      std::fputs(trainer->plan().summary().c_str(), stdout);
      if (!trainer->resumed_from().empty())
        std::printf("resuming from %s at step %lld\n", trainer->resumed_from().c_str(),
                    static_cast<long long>(trainer->start_step()));
      else if (cfg.resume == "auto")
        std::printf("no checkpoint in %s yet: starting fresh\n", cfg.checkpoint_dir.c_str());
      std::fflush(stdout);
    }
    if (spec.before_fit) spec.before_fit(*trainer);
    const TrainResult r = trainer->fit();
    if (env.rank() == 0) {
      std::printf("done: %lld steps, last loss %.6f, params_sum %.10g, params_l2 %.10g", static_cast<long long>(r.steps),
                  r.last_loss, r.params_sum, r.params_l2);
      if (r.test.accuracy == r.test.accuracy) std::printf(", test_accuracy %.4f", r.test.accuracy);
      // Whole samples/s where that is precise enough; slow models (a few per second) keep 2 decimals.
      // Steady state first (after the first window), the whole run's figure beside it.
      auto digits = [](double rate) { return rate >= 100 ? 0 : 2; };
      std::printf(", %.*f samples/s steady (%.*f whole run), %.1fs training\n", digits(r.steady_samples_per_second),
                  r.steady_samples_per_second, digits(r.samples_per_second), r.samples_per_second, r.train_seconds);
      std::fflush(stdout);
      if (r.stopped)
        std::fprintf(stderr, "%s: stopped by %s after step %lld%s\n", prog,
                     r.stop_signal != 0 ? signal_name(r.stop_signal).c_str() : "a signal to another rank",
                     static_cast<long long>(r.steps),
                     cfg.checkpoint_dir.empty()
                         ? " (no --checkpoint-dir: nothing saved)"
                         : ("; checkpoint written in " + cfg.checkpoint_dir + ": continue with --resume auto").c_str());
    }
    const int code = r.stopped ? kExitStopped : spec.after_fit ? spec.after_fit(*trainer, r) : 0;
    trainer.reset();
    comm.reset();
    env.finalize();
    return code;
  } catch (const AgreedError& e) {
    // Every rank found the same problem through a collective: rank 0 says it, all exit cleanly.
    if (env.rank() == 0) std::fprintf(stderr, "%s: error: %s\n", prog, e.what());
    std::fflush(stderr);
    // No rank may exit before rank 0 has printed: the launcher ends the job at the first exit.
    try {
      if (comm) comm->barrier();
    } catch (const std::exception&) {
    }
    trainer.release();  // NOLINT: no destructor may run collectives now
    env.finalize();
    return kExitBadInput;
  } catch (const std::exception& e) {
    const auto [kind, code] = classify(e);
    if (comm) comm->abort();
    env.fail(kind, first_line(e), code);
  }
}

}  // namespace vdp
