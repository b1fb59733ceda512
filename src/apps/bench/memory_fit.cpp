// vdp-bench section memory, the fitting half: recomputation off and on (peak activation memory and
// step time of one micro-step, side by side in one process), and --micro-batch auto against the
// largest size that fits found by a scan with the search's meter (and the search's time against a window's).
#include <ATen/ATen.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "bench.h"
#include "vdp/device/memory.h"
#include "vdp/dist/communicator.h"
#include "vdp/nn/gpt.h"
#include "vdp/nn/models.h"
#include "vdp/task/task.h"
#include "vdp/train/trainer.h"

namespace vdp::bench {
namespace {

const torch::Device kCpu(torch::kCPU);

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// One micro-step (forward, cross-entropy, backward into existing gradients): seconds, and the
// peak bytes above what was live before it.
std::pair<double, int64_t> micro_step(Net& net, const Batch& b, const torch::Tensor& target) {
  for (auto& p : net.parameters())
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
  const int64_t before = live_memory(kCpu);
  reset_peak_memory(kCpu);
  const auto t0 = Clock::now();
  auto out = net.forward(b);
  torch::cross_entropy_loss(out.reshape({-1, out.size(-1)}), target.reshape({-1})).backward();
  return {since(t0), peak_memory(kCpu) - before};
}

json recompute_row(const std::string& name, Net& net, const Batch& b, const torch::Tensor& target, int steps) {
  // Warm-up excluded on both sides; then the two modes alternate, so drift hits both alike.
  for (bool on : {false, true}) {
    net.set_recompute(on);
    micro_step(net, b, target);
  }
  std::vector<double> t_off, t_on;
  int64_t peak_off = 0, peak_on = 0;
  for (int i = 0; i < steps; ++i)
    for (bool on : {false, true}) {
      net.set_recompute(on);
      const auto [s, peak] = micro_step(net, b, target);
      (on ? t_on : t_off).push_back(s);
      (on ? peak_on : peak_off) = std::max(on ? peak_on : peak_off, peak);
    }
  return {{"model", name},
          {"peak_off_mb", peak_off / 1048576.0},
          {"peak_on_mb", peak_on / 1048576.0},
          {"peak_ratio", static_cast<double>(peak_on) / static_cast<double>(peak_off)},
          {"step_off_s", median(t_off)},
          {"step_on_s", median(t_on)},
          {"time_ratio", median(t_on) / median(t_off)},
          {"steps", steps}};
}

json auto_row(const std::string& budget) {
  const int64_t b = 1024;
  std::vector<std::string> args = {"--dataset", "fashion-mnist", "--model", "fmnist-cnn", "--global-batch",
                                   std::to_string(b), "--micro-batch", "auto", "--memory-budget", budget,
                                   "--max-steps", "6", "--optimizer", "adam", "--lr", "0.001"};
  Config cfg = make_config(args);
  Trainer trainer(cfg, make_task(cfg), std::make_shared<SelfCommunicator>());
  const MicroBatchChoice c = trainer.micro_batch_choice();
  const TrainResult r = trainer.fit();
  const double window_s = static_cast<double>(b) / r.steady_samples_per_second;
  // The largest size that fits, by a scan in steps of 8 samples with the search's own meter.
  Config plain = cfg;
  plain.micro_batch = 1;
  Task task = make_task(plain);
  int64_t largest = 0;
  {
    MicroStepMeter meter(plain, task, kCpu);
    for (int64_t s = 8; s <= b; s += 8)
      if (const auto t = meter.total(s); t && *t <= c.budget_bytes) largest = s;
  }
  return {{"budget", budget},
          {"budget_mb", c.budget_bytes / 1048576.0},
          {"chosen_chunk", c.fits.at(0)},
          {"micro_batch", c.micro_batch},
          {"K", trainer.plan().full_micro_steps()},
          {"largest_that_fits", largest},
          {"chosen_vs_largest", static_cast<double>(c.fits.at(0)) / static_cast<double>(std::max<int64_t>(1, largest))},
          {"peak_mb", c.peak_bytes / 1048576.0},
          {"trials", c.trials},
          {"search_s", c.seconds},
          {"window_s", window_s},
          {"search_in_windows", c.seconds / window_s}};
}

}  // namespace

json section_memory_fit(int64_t steps) {
  json out;
  const int n = static_cast<int>(std::max<int64_t>(3, std::min<int64_t>(steps, 8)));
  json rows = json::array();
  {
    torch::manual_seed(0);
    Gpt gpt(GptShape{257, 256, 6, 4, 128});
    Batch b;
    b.x = torch::randint(0, 257, {8, 256}, torch::kInt64);
    rows.push_back(recompute_row("gpt 6x128, context 256, 8 sequences", gpt, b, torch::randint(0, 257, {8, 256}, torch::kInt64), n));
  }
  {
    torch::manual_seed(0);
    ResNet18 net(3, 10, NormKind::Group, false);
    Batch b;
    b.x = torch::randn({16, 3, 32, 32});
    rows.push_back(recompute_row("resnet18 (group norm), 16 x 3x32x32", net, b, torch::randint(0, 10, {16}, torch::kInt64), n));
  }
  out["recompute"] = rows;
  json autos = json::array();
  for (const char* budget : {"48M", "160M"}) autos.push_back(auto_row(budget));
  out["auto"] = autos;
  return out;
}

}  // namespace vdp::bench
