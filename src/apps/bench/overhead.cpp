// vdp-bench section overhead: vdp vs a plain LibTorch loop at W=1.
#include <ATen/ATen.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/sgd.h>
#include <unistd.h>

#include <algorithm>
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

// --- overhead: vdp vs a plain LibTorch loop, W = 1 --------------------------------------------
// Both sides are timed window by window in steady state (the same windows: the first two and the
// last left out) and report samples per second of their median window: a window hit by the
// machine's noise (another process, a VM's stolen time) moves a mean by several percent on 2
// cores, but not the median.
double median(std::vector<double> v) {
  VDP_ASSERT(!v.empty(), "no timed windows");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double plain_loop_rate(const vdp::Config& cfg, int64_t steps) {
  vdp::Task task = vdp::make_task(cfg);
  auto params = task.model->parameters();
  torch::optim::SGD opt(params, torch::optim::SGDOptions(cfg.lr).momentum(cfg.momentum));
  vdp::Plan plan({task.train->size(), cfg.global_batch, 1, cfg.micro_batch, cfg.seed, false});
  task.model->train();
  std::vector<double> windows;
  for (int64_t s = 0; s < steps; ++s) {
    const auto t0 = Clock::now();
    opt.zero_grad();
    const int64_t k_s = plan.micro_steps(s);
    for (int64_t k = 0; k < k_s; ++k) {
      vdp::Batch b = task.train->get(plan.slot(0, s, k, 0));
      (torch::nn::functional::cross_entropy(task.model->forward(b), b.y) * (b.size() / double(cfg.global_batch)))
          .backward();
    }
    opt.step();
    if (s >= 2 && s < steps - 1) windows.push_back(since(t0));  // the windows vdp's side times
  }
  return cfg.global_batch / median(windows);
}

double vdp_rate(const vdp::Config& cfg) {
  vdp::Trainer t(cfg, vdp::make_task(cfg), std::make_shared<vdp::SelfCommunicator>());
  // A window's record arrives while the next window runs (Note [window read one late]), one per
  // window: the time between two records is a window's time. The last record comes after the
  // loop, so its interval holds only a window's tail: left out.
  std::vector<double> windows;
  Clock::time_point last;
  t.on_step([&](const vdp::StepRecord& r) {
    const auto now = Clock::now();
    if (r.step >= 2 && r.step < cfg.max_steps - 1) windows.push_back(std::chrono::duration<double>(now - last).count());
    last = now;
  });
  t.fit();
  return cfg.global_batch / median(windows);
}


json section_overhead(int64_t steps) {
  json rows = json::array();
  for (int64_t k : {1, 4}) {
    const int64_t m = 32;
    const int64_t n = std::max<int64_t>(steps, 40) * 4 / k;  // the same samples for every K
    vdp::Config cfg = make_config(cnn_args(m * k, m, n));
    vdp_rate(make_config(cnn_args(m * k, m, 5)));  // warm-up (allocator, caches)
    // Interleaved pairs (plain, then vdp), so that the machine's drift hits both alike; both sides
    // leave out their first window and time the same windows (their median one). The overhead is
    // the median of the pairs' ratios (robust to a pair hit by noise); the rates shown are the
    // medians of each side.
    std::vector<double> plain, mine, ratio;
    for (int rep = 0; rep < 9; ++rep) {
      plain.push_back(plain_loop_rate(cfg, n));
      mine.push_back(vdp_rate(cfg));
      ratio.push_back(plain.back() / mine.back());
    }
    rows.push_back({{"K", k}, {"micro_batch", m}, {"vdp_samples_per_s", median(mine)},
                    {"plain_samples_per_s", median(plain)}, {"overhead_percent", (median(ratio) - 1) * 100},
                    {"pairs", ratio.size()}});
  }
  return rows;
}

}  // namespace vdp::bench
