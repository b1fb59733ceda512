// vdp-bench section memory: peak RSS at K = 1, 4, 16, vdp vs summing the losses.
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

}  // namespace vdp::bench
