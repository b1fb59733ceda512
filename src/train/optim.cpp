#include "vdp/train/optim.h"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <cmath>

#include "vdp/core/error.h"

namespace vdp {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const Config& c, const std::vector<torch::Tensor>& params) {
  using namespace torch::optim;
  switch (c.optimizer) {
    case OptimizerKind::Sgd:
      return std::make_unique<SGD>(
          params, SGDOptions(c.lr).momentum(c.momentum).nesterov(c.nesterov).weight_decay(c.weight_decay));
    case OptimizerKind::Adam:
      return std::make_unique<Adam>(
          params, AdamOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(c.weight_decay));
    case OptimizerKind::AdamW:
      return std::make_unique<AdamW>(
          params, AdamWOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(c.weight_decay));
  }
  VDP_ASSERT(false, "unknown optimizer");
  return nullptr;
}

void set_learning_rate(torch::optim::Optimizer& opt, double lr) {
  for (auto& group : opt.param_groups()) group.options().set_lr(lr);
}

LrSchedule::LrSchedule(const Config& c, int64_t total_steps)
    : kind_(c.lr_schedule),
      lr_(c.lr),
      min_lr_(c.min_lr),
      gamma_(c.lr_gamma),
      warmup_(c.warmup_steps),
      step_size_(c.lr_step_size),
      total_(total_steps) {}

double LrSchedule::at(int64_t step) const {
  if (step < warmup_) return lr_ * static_cast<double>(step + 1) / static_cast<double>(warmup_);
  switch (kind_) {
    case ScheduleKind::Constant: return lr_;
    case ScheduleKind::Step: return lr_ * std::pow(gamma_, static_cast<double>(step / step_size_));
    case ScheduleKind::Cosine: {
      const double span = std::max<int64_t>(1, total_ - warmup_);
      const double p = std::min(1.0, static_cast<double>(step - warmup_) / span);
      return min_lr_ + (lr_ - min_lr_) * 0.5 * (1.0 + std::cos(M_PI * p));
    }
  }
  return lr_;
}

double global_grad_norm(const std::vector<torch::Tensor>& grads) {
  double sq = 0;
  for (const auto& g : grads) {
    const double n = g.norm(2).item<double>();
    sq += n * n;
  }
  return std::sqrt(sq);
}

double clip_grad_norm(const std::vector<torch::Tensor>& grads, double max_norm) {
  const double norm = global_grad_norm(grads);
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0)
    for (const auto& g : grads) g.mul_(coef);
  return norm;
}

}  // namespace vdp
