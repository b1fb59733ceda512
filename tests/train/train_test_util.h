// Helpers shared by the training tests: run vdp's trainer in process from command-line style
// arguments, flatten parameters, compare.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "vdp/config/config.h"
#include "vdp/dist/communicator.h"
#include "vdp/dist/factory.h"
#include "vdp/dist/mpi_env.h"
#include "vdp/grad/flat_grads.h"
#include "vdp/train/trainer.h"

namespace vdp::testing {

inline Config config_from(std::vector<std::string> args) {
  args.insert(args.begin(), "vdp-train");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return parse_config(static_cast<int>(argv.size()), argv.data()).config;
}

// `base` with the arguments `more` appended.
inline std::vector<std::string> with(std::vector<std::string> base, const std::vector<std::string>& more) {
  base.insert(base.end(), more.begin(), more.end());
  return base;
}

// N = 101 (prime), B = 10: ten full steps and a last step of one sample, fewer than W ranks.
inline const std::vector<std::string> kRegression = {"--dataset", "regression", "--model", "mlp", "--samples", "101",
                                                     "--global-batch", "10", "--epochs", "2", "--hidden", "16",
                                                     "--seed", "5"};
// Every optimizer, with clipping and schedules.
inline const std::vector<std::vector<std::string>> kOptimizers = {
    {"--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9", "--nesterov", "--weight-decay", "1e-3",
     "--clip-grad-norm", "0.5", "--lr-schedule", "cosine", "--warmup-steps", "3"},
    {"--optimizer", "adam", "--lr", "0.01", "--clip-grad-norm", "1.0", "--lr-schedule", "step", "--lr-step-size", "4"},
    {"--optimizer", "adamw", "--lr", "0.01", "--weight-decay", "0.05"},
};

// The communicator of this launch: MPI under mpirun, self otherwise (CPU).
inline std::shared_ptr<Communicator> world() {
  Config cfg;
  cfg.device = DeviceKind::Cpu;
  return make_communicator(cfg, MpiEnv::get());
}

inline torch::Tensor flat_params(const torch::nn::Module& m) {
  std::vector<torch::Tensor> parts;
  for (const auto& p : m.parameters()) parts.push_back(p.detach().to(torch::kFloat64).flatten().cpu());
  return torch::cat(parts);
}

// ||a - b|| / ||b||
inline double rel_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).norm().item<double>() / b.norm().item<double>();
}

// A window's reduced totals, read on the host: [loss sum, count, stop votes].
struct Totals {
  double loss_sum, count, stop_votes;
};
inline Totals totals_of(const FlatGrads& flat) {
  const torch::Tensor t = flat.totals_tensor().cpu();
  return {t[0].item<double>(), t[1].item<double>(), t[2].item<double>()};
}

struct RunOutput {
  torch::Tensor params;
  TrainResult result;
};

inline RunOutput run_vdp(const std::vector<std::string>& args,
                         std::shared_ptr<Communicator> comm = std::make_shared<SelfCommunicator>()) {
  Config cfg = config_from(args);
  cfg.eval = false;
  cfg.quiet = true;
  Task task = make_task(cfg);
  Trainer trainer(cfg, task, comm);
  RunOutput out;
  out.result = trainer.fit();
  out.params = flat_params(trainer.model());
  return out;
}

}  // namespace vdp::testing
