// vdp-bench: benchmarks that print figures measured side by side in one run (never assertions).
//   1. vdp vs PyTorch DDP (no_sync; gloo on CPU) at W=2: samples/s and the ratio     [section ddp]
//   2. vdp vs a plain LibTorch loop at W=1: overhead in percent                      [section overhead]
//   3. peak memory at K = 1, 4, 16 with m fixed, and the "sum the losses, one
//      backward" approach at the same K: ratios                                      [section memory]
//   4. all-reduce bytes per step (for several K) and algorithm/bus bandwidth of
//      vdp's reduction vs a bare MPI_Allreduce of the same size, at W=2              [section dist]
//   5. overlap on vs off at W=2: window time                                         [section dist]
//   6. vdp vs PyTorch DDP on a small GPT at W=2: tokens/s (steady state) and the ratio  [section gpt]
// Sections that need two ranks or another process (for a clean peak-memory reading) re-run this
// program as a child (under mpirun for W=2) and read one JSON line back.
//   vdp-bench [--json] [--sections ddp,overhead,memory,dist,gpt] [--steps N] [--python PY]
#include <ATen/ATen.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/sgd.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "vdp/config/config.h"
#include "vdp/core/error.h"
#include "vdp/dist/factory.h"
#include "vdp/dist/mpi_env.h"
#include "vdp/grad/flat_grads.h"
#include "vdp/grad/reducer.h"
#include "vdp/plan/plan.h"
#include "vdp/train/trainer.h"

#ifndef VDP_SOURCE_DIR
#define VDP_SOURCE_DIR "."
#endif
#ifndef VDP_PYTHON_DEFAULT
#define VDP_PYTHON_DEFAULT ""
#endif

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

vdp::Config make_config(std::vector<std::string> args) {
  args.insert(args.begin(), "vdp-bench");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  vdp::Config c = vdp::parse_config(static_cast<int>(argv.size()), argv.data()).config;
  c.quiet = true;
  c.eval = false;
  return c;
}

// The model and data every timing section uses: the Fashion-MNIST CNN.
std::vector<std::string> cnn_args(int64_t global_batch, int64_t micro_batch, int64_t steps) {
  return {"--dataset", "fashion-mnist", "--model", "fmnist-cnn", "--global-batch", std::to_string(global_batch),
          "--micro-batch", std::to_string(micro_batch), "--max-steps", std::to_string(steps), "--optimizer", "sgd",
          "--lr", "0.01", "--momentum", "0.9"};
}

std::string self_exe() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  VDP_CHECK(n > 0, "cannot find this program's path");
  buf[n] = 0;
  return buf;
}

// Runs a shell command and returns the last line of its output that parses as a JSON object.
json run_child(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  VDP_CHECK(p != nullptr, "cannot run: ", cmd);
  std::string out, line;
  char buf[4096];
  while (fgets(buf, sizeof buf, p)) out += buf;
  const int rc = pclose(p);
  VDP_CHECK(rc == 0, "benchmark child failed (", rc, "): ", cmd, "\n", out);
  json last;
  std::istringstream in(out);
  while (std::getline(in, line))
    if (!line.empty() && line[0] == '{') try {
        last = json::parse(line);
      } catch (...) {
      }
  VDP_CHECK(last.is_object(), "benchmark child printed no result: ", cmd, "\n", out);
  return last;
}

std::string mpirun_prefix(int np) {
  std::string s = "mpirun -np " + std::to_string(np) + " --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 ";
  if (getuid() == 0) s += "--allow-run-as-root ";
  return s;
}

// --- overhead: vdp vs a plain LibTorch loop, W = 1 --------------------------------------------
double plain_loop_rate(const vdp::Config& cfg, int64_t steps) {
  vdp::Task task = vdp::make_task(cfg);
  auto params = task.model->parameters();
  torch::optim::SGD opt(params, torch::optim::SGDOptions(cfg.lr).momentum(cfg.momentum));
  vdp::Plan plan({task.train->size(), cfg.global_batch, 1, cfg.micro_batch, cfg.seed, false});
  task.model->train();
  auto t0 = Clock::now();
  int64_t samples = 0;
  for (int64_t s = 0; s < steps; ++s) {
    opt.zero_grad();
    const int64_t k_s = plan.micro_steps(s);
    for (int64_t k = 0; k < k_s; ++k) {
      vdp::Batch b = task.train->get(plan.slot(0, s, k, 0));
      (torch::nn::functional::cross_entropy(task.model->forward(b), b.y) * (b.size() / double(cfg.global_batch)))
          .backward();
      samples += b.size();
    }
    opt.step();
  }
  return samples / since(t0);
}

double vdp_rate(const vdp::Config& cfg) {
  vdp::Trainer t(cfg, vdp::make_task(cfg), std::make_shared<vdp::SelfCommunicator>());
  return t.fit().samples_per_second;
}

json section_overhead(int64_t steps) {
  json rows = json::array();
  for (int64_t k : {1, 4}) {
    const int64_t m = 32;
    const int64_t n = std::max<int64_t>(steps, 40) * 4 / k;  // the same samples for every K
    vdp::Config cfg = make_config(cnn_args(m * k, m, n));
    vdp_rate(make_config(cnn_args(m * k, m, 5)));  // warm-up (allocator, caches)
    // Interleaved repetitions, best of each, so that machine noise hits both alike.
    double best_vdp = 0, best_plain = 0;
    for (int rep = 0; rep < 5; ++rep) {
      best_plain = std::max(best_plain, plain_loop_rate(cfg, n));
      best_vdp = std::max(best_vdp, vdp_rate(cfg));
    }
    rows.push_back({{"K", k}, {"micro_batch", m}, {"vdp_samples_per_s", best_vdp},
                    {"plain_samples_per_s", best_plain}, {"overhead_percent", (best_plain / best_vdp - 1) * 100}});
  }
  return rows;
}

// --- memory: peak RSS above the baseline, in a fresh process per measurement ------------------
int64_t status_kb(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(field, 0) == 0) return std::stoll(line.substr(std::string(field).size()));
  return -1;
}

json child_memory(const std::string& mode, int64_t k, int64_t m) {
  vdp::Config cfg = make_config(cnn_args(m * k, m, 3));
  vdp::Task task = vdp::make_task(cfg);
  std::unique_ptr<vdp::Trainer> trainer;
  if (mode == "vdp") trainer = std::make_unique<vdp::Trainer>(cfg, task, std::make_shared<vdp::SelfCommunicator>());
  // Writing 5 to clear_refs resets the peak (VmHWM) to the current RSS: the baseline holds the
  // data, the model and LibTorch, and the peak above it is what training itself needs.
  { std::ofstream("/proc/self/clear_refs") << "5"; }
  const int64_t base = status_kb("VmRSS:");
  if (mode == "vdp") {
    trainer->fit();
  } else {
    // The recipe of the background documents: sum the K micro-batch losses, one backward. All K
    // graphs stay alive until that backward.
    auto params = task.model->parameters();
    torch::optim::SGD opt(params, torch::optim::SGDOptions(cfg.lr));
    vdp::Plan plan({task.train->size(), cfg.global_batch, 1, m, cfg.seed, false});
    for (int64_t s = 0; s < 3; ++s) {
      opt.zero_grad();
      torch::Tensor total = torch::zeros({});
      for (int64_t kk = 0; kk < plan.micro_steps(s); ++kk) {
        vdp::Batch b = task.train->get(plan.slot(0, s, kk, 0));
        total = total + torch::nn::functional::cross_entropy(task.model->forward(b), b.y) / double(k);
      }
      total.backward();
      opt.step();
    }
  }
  const int64_t peak = status_kb("VmHWM:");
  return {{"mode", mode}, {"K", k}, {"micro_batch", m}, {"baseline_mb", base / 1024.0},
          {"peak_above_baseline_mb", (peak - base) / 1024.0}};
}

json section_memory(const std::string& exe) {
  json rows = json::array();
  const int64_t m = 32;
  double vdp_k1 = 0;
  for (int64_t k : {1, 4, 16}) {
    json v = run_child(exe + " --child memory --mode vdp --k " + std::to_string(k) + " --m " + std::to_string(m));
    json s = run_child(exe + " --child memory --mode summed --k " + std::to_string(k) + " --m " + std::to_string(m));
    if (k == 1) vdp_k1 = v["peak_above_baseline_mb"].get<double>();
    rows.push_back({{"K", k}, {"micro_batch", m}, {"vdp_peak_mb", v["peak_above_baseline_mb"]},
                    {"summed_peak_mb", s["peak_above_baseline_mb"]},
                    {"vdp_vs_vdp_K1", v["peak_above_baseline_mb"].get<double>() / vdp_k1},
                    {"summed_vs_vdp", s["peak_above_baseline_mb"].get<double>() /
                                          v["peak_above_baseline_mb"].get<double>()},
                    {"baseline_mb", v["baseline_mb"]}});
  }
  return rows;
}

// --- dist: the reduction's bandwidth, bytes per step, overlap (run under mpirun -np 2) ---------
json child_dist(int64_t steps) {
  vdp::MpiEnv& env = vdp::MpiEnv::get();
  vdp::Config base = make_config(cnn_args(64, 16, steps));
  auto comm = vdp::make_communicator(base, env);
  const int w = comm->size();
  json out = {{"world_size", w}};

  // Bytes per step for several K: the same, since only the flat buffer travels.
  json bytes = json::array();
  for (int64_t k : {1, 4, 16}) {
    vdp::Config c = make_config(cnn_args(16 * w * k, 16, 2));
    vdp::Trainer t(c, vdp::make_task(c), comm);
    bytes.push_back({{"K", k}, {"bytes_per_step", t.fit().allreduce_bytes_per_step}});
  }
  out["allreduce_bytes"] = bytes;

  // The reduction of the CNN's flat buffer vs a bare MPI_Allreduce of the same size.
  {
    vdp::Task task = vdp::make_task(base);
    auto params = task.model->parameters();
    std::vector<std::string> names(params.size(), "p");
    vdp::FlatGrads flat(params, names);
    vdp::WindowReducer reducer(flat, params, comm, 25'000'000, false);
    const int64_t n = flat.buffers()[0].numel();
    auto raw = torch::zeros({n});
    const int reps = 50;
    double ours = 1e30, bare = 1e30;
    for (int round = 0; round < 3; ++round) {
      comm->barrier();
      auto t0 = Clock::now();
      for (int i = 0; i < reps; ++i) reducer.finish();
      ours = std::min(ours, since(t0) / reps);
      comm->barrier();
      t0 = Clock::now();
      for (int i = 0; i < reps; ++i)
        MPI_Allreduce(MPI_IN_PLACE, raw.data_ptr(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, env.world());
      bare = std::min(bare, since(t0) / reps);
    }
    const double b = static_cast<double>(reducer.bytes());
    const double bus = 2.0 * (w - 1) / w;
    out["allreduce"] = {{"bytes", reducer.bytes()},
                        {"vdp_seconds", ours},
                        {"vdp_algbw_gbps", b / ours / 1e9},
                        {"vdp_busbw_gbps", b / ours / 1e9 * bus},
                        {"mpi_seconds", bare},
                        {"mpi_algbw_gbps", b / bare / 1e9},
                        {"mpi_busbw_gbps", b / bare / 1e9 * bus},
                        {"vdp_vs_mpi_time", ours / bare}};
  }

  // Overlap on vs off: mean window time at K = 4.
  json overlap = json::object();
  for (bool on : {false, true, false, true}) {
    vdp::Config c = make_config(cnn_args(16 * w * 4, 16, steps));
    c.overlap = on;
    c.bucket_mb = 0.25;  // several buckets for the 1.7 MB CNN, so there is something to overlap
    vdp::Trainer t(c, vdp::make_task(c), comm);
    vdp::TrainResult r = t.fit();
    const double window = r.train_seconds / static_cast<double>(r.steps);
    const char* key = on ? "on_window_seconds" : "off_window_seconds";
    overlap[key] = overlap.contains(key) ? std::min(overlap[key].get<double>(), window) : window;
  }
  overlap["off_vs_on"] = overlap["off_window_seconds"].get<double>() / overlap["on_window_seconds"].get<double>();
  out["overlap"] = overlap;
  return out;
}

// --- ddp: vdp vs PyTorch DDP, through the reference script -------------------------------------
json section_ddp(const std::string& python, int64_t steps) {
  const std::string script = std::string(VDP_SOURCE_DIR) + "/tests/reference/ddp_reference.py";
  std::ostringstream cmd;
  cmd << "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " << python << " " << script
      << " --vdp-train " << self_exe().substr(0, self_exe().rfind('/')) << "/vdp-train --bench --json"
      << " --global-batch 128 --steps " << steps << " --micro-batches 4 64 2>/dev/null";
  return run_child(cmd.str());
}

// --- gpt: vdp vs PyTorch DDP on a small GPT, token-weighted loss, AdamW --------------------------
json section_gpt(const std::string& python, int64_t steps) {
  const std::string script = std::string(VDP_SOURCE_DIR) + "/tests/reference/gpt_ddp_reference.py";
  std::ostringstream cmd;
  cmd << "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " << python << " " << script
      << " --vdp-train " << self_exe().substr(0, self_exe().rfind('/')) << "/vdp-train --json --steps "
      << std::max<int64_t>(steps, 12) << " --warmup 5 --micro-batches 1 2 8 2>/dev/null";
  return run_child(cmd.str());
}

void print_tables(const json& r) {
  if (r.contains("ddp")) {
    std::printf("\n1. vdp vs PyTorch DDP (gloo, no_sync), W=2, CPU, fmnist-cnn, global batch 128\n");
    std::printf("   %-11s %4s %14s %14s %8s\n", "micro-batch", "K", "vdp samples/s", "DDP samples/s", "vdp/DDP");
    for (const auto& row : r["ddp"]["rows"])
      std::printf("   %-11lld %4lld %14.1f %14.1f %8.2f\n", row["micro_batch"].get<long long>(),
                  row["K"].get<long long>(), row["vdp"].get<double>(), row["ddp"].get<double>(),
                  row["ratio"].get<double>());
  }
  if (r.contains("overhead")) {
    std::printf("\n2. vdp vs a plain LibTorch loop, W=1, fmnist-cnn (best of 5 interleaved runs)\n");
    std::printf("   %4s %6s %14s %16s %10s\n", "K", "m", "vdp samples/s", "plain samples/s", "overhead");
    for (const auto& row : r["overhead"])
      std::printf("   %4lld %6lld %14.1f %16.1f %9.1f%%\n", row["K"].get<long long>(),
                  row["micro_batch"].get<long long>(), row["vdp_samples_per_s"].get<double>(),
                  row["plain_samples_per_s"].get<double>(), row["overhead_percent"].get<double>());
  }
  if (r.contains("memory")) {
    std::printf("\n3. peak memory above the baseline (RSS, MB), fmnist-cnn, m=32, one process per row\n");
    std::printf("   %4s %10s %12s %14s %16s\n", "K", "vdp", "summed-loss", "vdp / vdp K=1", "summed / vdp");
    for (const auto& row : r["memory"])
      std::printf("   %4lld %10.1f %12.1f %14.2f %16.2f\n", row["K"].get<long long>(), row["vdp_peak_mb"].get<double>(),
                  row["summed_peak_mb"].get<double>(), row["vdp_vs_vdp_K1"].get<double>(),
                  row["summed_vs_vdp"].get<double>());
  }
  if (r.contains("dist")) {
    const json& d = r["dist"];
    std::printf("\n4. all-reduce, W=%d (MPI backend)\n   bytes per step:", d["world_size"].get<int>());
    for (const auto& b : d["allreduce_bytes"])
      std::printf("  K=%lld: %lld", b["K"].get<long long>(), b["bytes_per_step"].get<long long>());
    const json& a = d["allreduce"];
    std::printf("\n   %-22s %12s %12s %12s\n", "", "time (us)", "algbw GB/s", "busbw GB/s");
    std::printf("   %-22s %12.1f %12.3f %12.3f\n", "vdp reducer", a["vdp_seconds"].get<double>() * 1e6,
                a["vdp_algbw_gbps"].get<double>(), a["vdp_busbw_gbps"].get<double>());
    std::printf("   %-22s %12.1f %12.3f %12.3f\n", "bare MPI_Allreduce", a["mpi_seconds"].get<double>() * 1e6,
                a["mpi_algbw_gbps"].get<double>(), a["mpi_busbw_gbps"].get<double>());
    std::printf("   vdp / MPI time: %.3f  (%lld bytes)\n", a["vdp_vs_mpi_time"].get<double>(),
                a["bytes"].get<long long>());
    const json& o = d["overlap"];
    std::printf("\n5. overlap, W=%d, K=4, m=16, 0.25 MB buckets: window %.2f ms off, %.2f ms on (off/on %.3f)\n",
                d["world_size"].get<int>(), o["off_window_seconds"].get<double>() * 1e3,
                o["on_window_seconds"].get<double>() * 1e3, o["off_vs_on"].get<double>());
  }
  if (r.contains("gpt")) {
    const json& g = r["gpt"];
    std::printf("\n6. vdp vs PyTorch DDP (gloo, no_sync), W=2, CPU, GPT %d layers x %d wide, context %d "
                "(%lld parameters), %d sequences per step, AdamW, steady state (steps %d..%d)\n",
                g["layers"].get<int>(), g["width"].get<int>(), g["context"].get<int>(),
                g["parameters"].get<long long>(), g["global_batch"].get<int>(), g["warmup"].get<int>(),
                g["steps"].get<int>() - 1);
    std::printf("   %-11s %4s %13s %13s %8s %11s\n", "micro-batch", "K", "vdp tokens/s", "DDP tokens/s", "vdp/DDP",
                "param diff");
    for (const auto& row : g["rows"])
      std::printf("   %-11lld %4lld %13.0f %13.0f %8.2f %11.2e\n", row["micro_batch"].get<long long>(),
                  row["K"].get<long long>(), row["vdp"].get<double>(), row["ddp"].get<double>(),
                  row["ratio"].get<double>(), row["param_rel_diff"].get<double>());
  }
}

int run(int argc, char** argv) {
  bool as_json = false;
  std::string sections = "ddp,overhead,memory,dist,gpt", child, mode, python = VDP_PYTHON_DEFAULT;
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
      std::puts("usage: vdp-bench [--json] [--sections ddp,overhead,memory,dist,gpt] [--steps N] [--python PY]");
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
  if (wants("memory")) result["memory"] = section_memory(exe);
  if (wants("dist")) result["dist"] = run_child(mpirun_prefix(2) + exe + " --child dist --steps " + std::to_string(steps));
  if (wants("overhead")) result["overhead"] = section_overhead(steps);
  if (as_json) std::cout << result.dump(2) << std::endl;
  else print_tables(result);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  vdp::MpiEnv& env = vdp::MpiEnv::init(&argc, &argv);
  at::set_num_threads(std::max(1, static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)) / env.local_size()));
  int rc = 0;
  try {
    rc = run(argc, argv);
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
