// vdp-bench (the driver; one file per section beside it): benchmarks that print figures measured side by side in one run (never assertions).
//   1. vdp vs PyTorch DDP (no_sync; gloo on CPU) at W=2: samples/s and the ratio     [section ddp]
//   2. vdp vs a plain LibTorch loop at W=1: overhead in percent                      [section overhead]
//   3. peak memory at K = 1, 4, 16 with m fixed, and the "sum the losses, one
//      backward" approach at the same K: ratios                                      [section memory]
//   4. all-reduce bytes per step (for several K) and algorithm/bus bandwidth of
//      vdp's reduction vs a bare MPI_Allreduce of the same size, at W=2              [section dist]
//   5. overlap on vs off at W=2: window time                                         [section dist]
//   6. vdp vs PyTorch DDP on a small GPT at W=2: tokens/s (steady state) and the ratio  [section gpt]
//   7. on a GPU, W=1: vdp vs PyTorch eager and PyTorch graphed by hand, samples/s and
//      peak memory at B = 128, 1024 and several m, fp32 and bf16 (skipped without CUDA) [section gpu]
// Sections that need two ranks or another process (for a clean peak-memory reading) re-run this
// program as a child (under mpirun for W=2) and read one JSON line back.
//   8. on a GPU, W=1: GPT-2 small's shape, bf16, vdp vs PyTorch eager and torch.compile,
//      tokens/s, MFU, peak memory at K=16 over K=1 (skipped without CUDA)          [section gpt-gpu]
//   9. --shard-optimizer vs the replicated optimizer at W=2 and W=4 (MPI): time per window, per-rank
//      parameters, gradient buffer and optimizer state, fmnist-cnn and a 12M gpt  [section shard]
//   vdp-bench [--json] [--sections ddp,overhead,memory,dist,gpt,gpu,gpt-gpu,shard] [--steps N] [--python PY]
#include <ATen/ATen.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/sgd.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "bench.h"
#include "vdp/core/error.h"
#include "vdp/dist/factory.h"
#include "vdp/dist/mpi_env.h"
#include "vdp/grad/flat_grads.h"
#include "vdp/grad/reducer.h"
#include "vdp/plan/plan.h"
#include "vdp/train/trainer.h"

namespace vdp::bench {
namespace {

int run(int argc, char** argv) {
  bool as_json = false;
  std::string sections = "ddp,overhead,memory,dist,gpt,gpu,gpt-gpu,shard", child, mode, python = VDP_PYTHON_DEFAULT;
  int64_t steps = 40, k = 1, m = 32;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      VDP_CHECK(i + 1 < argc, "vdp-bench: ", a, " needs a value");
      return argv[++i];
    };
    if (a == "--json") as_json = true;
    else if (a == "--sections") sections = next();
    else if (a == "--steps") steps = std::stoll(next());
    else if (a == "--python") python = next();
    else if (a == "--child") child = next();
    else if (a == "--mode") mode = next();
    else if (a == "--k") k = std::stoll(next());
    else if (a == "--m") m = std::stoll(next());
    else if (a == "--help" || a == "-h") {
      std::puts("usage: vdp-bench [--json] [--sections ddp,overhead,memory,dist,gpt,gpu,gpt-gpu,shard] [--steps N] [--python PY]");
      return 0;
    } else {
      VDP_FAIL("vdp-bench: unknown argument '", a, "' (see vdp-bench --help)");
    }
  }
  if (child == "memory") {
    std::cout << child_memory(mode, k, m).dump() << std::endl;
    return 0;
  }
  if (child == "dist") {
    json r = child_dist(steps);
    if (vdp::MpiEnv::get().rank() == 0) std::cout << r.dump() << std::endl;
    return 0;
  }
  if (child == "shard") {
    json r = child_shard(steps);
    if (vdp::MpiEnv::get().rank() == 0) std::cout << r.dump() << std::endl;
    return 0;
  }
  const std::string exe = self_exe();
  json result = {{"machine", {{"cores", sysconf(_SC_NPROCESSORS_ONLN)}}}};
  auto wants = [&](const char* s) { return ("," + sections + ",").find("," + std::string(s) + ",") != std::string::npos; };
  // Sections that run in other processes first, the in-process one last: this process's own
  // thread pool must not compete with the children.
  if (wants("ddp")) {
    if (python.empty()) result["ddp_skipped"] = "no Python with torch configured (--python)";
    else result["ddp"] = section_ddp(python, steps);
  }
  if (wants("gpt")) {
    if (python.empty()) result["gpt_skipped"] = "no Python with torch configured (--python)";
    else result["gpt"] = section_gpt(python, steps);
  }
  if (wants("gpu")) {
    if (python.empty()) result["gpu_skipped"] = "no Python with torch configured (--python)";
    else result["gpu"] = section_gpu(python);
  }
  if (wants("gpt-gpu")) {
    if (python.empty()) result["gpt-gpu_skipped"] = "no Python with torch configured (--python)";
    else result["gpt-gpu"] = section_gpt_gpu(python);
  }
  if (wants("memory")) result["memory"] = section_memory(exe);
  if (wants("memory") || wants("memory-fit")) result["memory_fit"] = section_memory_fit(steps);
  if (wants("dist")) result["dist"] = run_child(mpirun_prefix(2) + exe + " --child dist --steps " + std::to_string(steps));
  if (wants("shard"))
    for (int w : {2, 4})
      result["shard"].push_back(
          run_child(mpirun_prefix(w) + exe + " --child shard --steps " + std::to_string(steps)));
  if (wants("overhead")) result["overhead"] = section_overhead(steps);
  if (as_json) std::cout << result.dump(2) << std::endl;
  else print_tables(result);
  return 0;
}

}  // namespace
}  // namespace vdp::bench

int main(int argc, char** argv) {
  vdp::MpiEnv& env = vdp::MpiEnv::init(&argc, &argv);
  at::set_num_threads(std::max(1, static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)) / env.local_size()));
  int rc = 0;
  try {
    rc = vdp::bench::run(argc, argv);
  } catch (const vdp::UserError& e) {
    std::fprintf(stderr, "vdp-bench: error: %s\n", e.what());
    env.abort(vdp::kExitBadInput);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vdp-bench: failed: %s\n", e.what());
    env.abort(vdp::kExitFailure);
  }
  env.finalize();
  return rc;
}
