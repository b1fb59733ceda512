#include "vdp/train/optim.h"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <ATen/ATen.h>

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

torch::Tensor global_grad_norm(const std::vector<torch::Tensor>& grads) {
  // PyTorch's order of operations (per-tensor norms in the gradients' dtype, then the norm of
  // those), so clipping matches torch.nn.utils.clip_grad_norm_ to the last bit.
  return at::linalg_vector_norm(at::stack(at::_foreach_norm(grads, 2)), 2);
}

double clip_grad_norm(const std::vector<torch::Tensor>& grads, double max_norm) {
  const torch::Tensor norm = global_grad_norm(grads);
  const torch::Tensor coef = at::clamp_max(max_norm / (norm + 1e-6), 1.0);
  at::_foreach_mul_(grads, coef);
  return norm.item<double>();
}

}  // namespace vdp
