// vdp-bench: the tables of every section.
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
    std::printf("\n2. vdp vs a plain LibTorch loop, W=1, fmnist-cnn, steady state (median of 9 interleaved pairs)\n");
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
  if (r.contains("memory_fit")) {
    const json& f = r["memory_fit"];
    std::printf("\n3b. recomputation (--recompute), one micro-step, off and on alternating in one process; peak bytes "
                "above what was live (counting CPU allocator), median step time\n");
    std::printf("   %-38s %10s %10s %7s %10s %10s %7s\n", "model", "peak off", "peak on", "ratio", "step off", "step on",
                "ratio");
    for (const auto& row : f["recompute"])
      std::printf("   %-38s %7.1f MB %7.1f MB %7.2f %8.3f s %8.3f s %7.2f\n", row["model"].get<std::string>().c_str(),
                  row["peak_off_mb"].get<double>(), row["peak_on_mb"].get<double>(), row["peak_ratio"].get<double>(),
                  row["step_off_s"].get<double>(), row["step_on_s"].get<double>(), row["time_ratio"].get<double>());
    std::printf("\n3c. --micro-batch auto, fmnist-cnn, Adam, B=1024, W=1: the chosen chunk against the largest that "
                "fits (a scan in steps of 8), the search's time against a steady window's\n");
    std::printf("   %8s %7s %5s %4s %9s %8s %9s %7s %9s %9s %8s\n", "budget", "chosen", "m", "K", "largest", "ratio",
                "peak", "trials", "search", "window", "windows");
    for (const auto& row : f["auto"])
      std::printf("   %8s %7lld %5lld %4lld %9lld %8.2f %6.1f MB %7d %7.2f s %7.3f s %8.2f\n",
                  row["budget"].get<std::string>().c_str(), row["chosen_chunk"].get<long long>(),
                  row["micro_batch"].get<long long>(), row["K"].get<long long>(),
                  row["largest_that_fits"].get<long long>(), row["chosen_vs_largest"].get<double>(),
                  row["peak_mb"].get<double>(), row["trials"].get<int>(), row["search_s"].get<double>(),
                  row["window_s"].get<double>(), row["search_in_windows"].get<double>());
  }
  if (r.contains("shard")) {
    std::printf("\n9. --shard-optimizer (ZeRO-1) vs replicated, MPI, same steps, steady state (after the first window), "
                "the better of two alternating runs; per-rank bytes\n");
    std::printf("   %2s %-50s %7s %9s %9s %6s %11s %11s %6s %9s %9s %6s\n", "W", "model", "params", "window",
                "sharded", "ratio", "state", "sharded", "ratio", "B/param", "sharded", "wire");
    for (const auto& s : r["shard"])
      for (const auto& row : s["rows"])
        std::printf("   %2d %-50s %6.2fM %7.3f s %7.3f s %6.3f %8.2f MB %8.2f MB %6.3f %9.2f %9.2f %6.3f\n",
                    s["world_size"].get<int>(), row["model"].get<std::string>().c_str(),
                    row["parameters"].get<double>() / 1e6,
                    row["replicated"]["window_s"].get<double>(), row["sharded"]["window_s"].get<double>(),
                    row["time_ratio"].get<double>(), row["replicated"]["state_bytes"].get<double>() / 1e6,
                    row["sharded"]["state_bytes"].get<double>() / 1e6, row["state_ratio"].get<double>(),
                    row["bytes_per_param_replicated"].get<double>(), row["bytes_per_param_sharded"].get<double>(),
                    row["wire_ratio"].get<double>());
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
  if (r.contains("gpu")) {
    const json& g = r["gpu"];
    if (g.contains("skipped")) {
      std::printf("\n7. GPU section skipped: %s\n", g["skipped"].get<std::string>().c_str());
    } else {
      std::printf("\n7. %s, W=1, fmnist-cnn, SGD momentum, steady state (steps %d..%d): samples/s\n",
                  g["device"].get<std::string>().c_str(), g["warmup"].get<int>(), g["steps"].get<int>() - 1);
      std::printf("   %5s %5s %4s %5s %10s %10s %6s %10s %7s %8s %9s %10s %6s %5s %10s %6s %5s\n", "B", "m", "K", "prec",
                  "vdp", "eager", "ratio", "graphed", "vdp/gr", "vdp MB", "eager MB", "resident", "ratio", "busy",
                  "graphs", "/eager", "/gr");
      auto get = [](const json& row, const char* key) {
        return row.contains(key) && row[key].is_number() ? row[key].get<double>() : NAN;
      };
      for (const auto& row : g["rows"]) {
        std::printf("   %5d %5d %4d %5s %10.0f %10.0f %6.2f %10.0f %7.2f %8.1f %9.1f %10.0f %6.2f %5.2f %10.0f %6.2f %5.2f\n",
                    row["B"].get<int>(), row["m"].get<int>(), row["K"].get<int>(),
                    row["precision"].get<std::string>().c_str(), row["vdp"].get<double>(),
                    row["pytorch_eager"].get<double>(), row["ratio"].get<double>(), get(row, "pytorch_graphed"),
                    get(row, "vdp_vs_graphed"), row["vdp_peak_mb"].get<double>(), row["eager_peak_mb"].get<double>(),
                    get(row, "vdp_resident"), get(row, "resident_ratio"), get(row, "vdp_gpu_busy"), get(row, "vdp_graphs"),
                    get(row, "graphs_vs_eager"), get(row, "vdp_graphs_vs_graphed"));
      }
    }
  }
  if (r.contains("gpt-gpu")) {
    const json& g = r["gpt-gpu"];
    if (g.contains("skipped")) {
      std::printf("\n8. GPT GPU section skipped: %s\n", g["skipped"].get<std::string>().c_str());
    } else {
      std::printf("\n8. %s, W=1, GPT (%lld parameters, context %d), %s, AdamW, steady state: tokens/s\n",
                  g["device"].get<std::string>().c_str(), g["parameters"].get<long long>(), g["context"].get<int>(),
                  g["precision"].get<std::string>().c_str());
      std::printf("   %3s %3s %10s %10s %9s %10s %8s %8s %8s %9s\n", "m", "K", "vdp", "eager", "vdp/eager", "compiled",
                  "vdp/comp", "vdp MFU", "vdp MB", "eager MB");
      for (const auto& row : g["rows"]) {
        auto num = [&](const char* key) { return row.contains(key) ? row[key].get<double>() : NAN; };
        std::printf("   %3d %3d %10.0f %10.0f %9.2f %10.0f %8.2f %8.3f %8.1f %9.1f\n", row["m"].get<int>(),
                    row["K"].get<int>(), num("vdp"), num("eager"), num("vdp_vs_eager"), num("compiled"),
                    num("vdp_vs_compiled"), num("vdp_mfu"), num("vdp_peak_mb"), num("eager_peak_mb"));
      }
      const json& mem = g["memory"];
      std::printf("   vdp peak memory at m=%d: K=1 %.1f MB, K=16 %.1f MB\n", mem["m"].get<int>(),
                  mem["K1_peak_mb"].get<double>(), mem["K16_peak_mb"].get<double>());
    }
  }
}

}  // namespace vdp::bench
