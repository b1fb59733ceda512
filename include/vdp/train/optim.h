// Optimizers (LibTorch's SGD, Adam, AdamW, with PyTorch's semantics), learning-rate schedules stepped
// once per optimizer step, and gradient-norm clipping over the flat buffer.
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>
#include <vector>

#include "vdp/config/config.h"

namespace vdp {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const Config& cfg, const std::vector<torch::Tensor>& params);

// Sets the learning rate of every parameter group.
void set_learning_rate(torch::optim::Optimizer& opt, double lr);

// lr(step) for step = 0, 1, ... (the optimizer step about to be taken).
//  constant: lr;  step: lr * gamma^floor(step / step_size);  cosine: min_lr + (lr - min_lr) *
//  (1 + cos(pi * p)) / 2 with p the progress after warm-up over the remaining steps.
//  Every schedule ramps linearly over the first warmup_steps: lr * (step + 1) / warmup_steps.
class LrSchedule {
 public:
  LrSchedule(const Config& cfg, int64_t total_steps);
  double at(int64_t step) const;

 private:
  ScheduleKind kind_;
  double lr_, min_lr_, gamma_;
  int64_t warmup_, step_size_, total_;
};

// L2 norm over all gradient tensors (0-d tensor in their dtype), computed as PyTorch does.
torch::Tensor global_grad_norm(const std::vector<torch::Tensor>& grads);
// PyTorch's clip_grad_norm_: multiply by min(1, max_norm / (norm + 1e-6)), computed in the
// gradients' dtype as torch does, so results match it bit for bit. Returns the norm before.
double clip_grad_norm(const std::vector<torch::Tensor>& grads, double max_norm);

}  // namespace vdp
