// Optimizers (LibTorch's SGD, Adam, AdamW, with PyTorch's semantics), learning-rate schedules stepped
// once per optimizer step, and gradient-norm clipping over the flat buffer.
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>
#include <vector>

#include "vdp/ckpt/safetensors.h"
#include "vdp/config/config.h"

namespace vdp {

class FusedOptimizer;

// The optimizer `cfg` names, as ATen's fused kernels (optim/fused_optim.h); base() is the LibTorch
// optimizer underneath.
std::unique_ptr<FusedOptimizer> make_optimizer(const Config& cfg, const std::vector<torch::Tensor>& params);

// Sets the learning rate of every parameter group.
void set_learning_rate(torch::optim::Optimizer& opt, double lr);

// Optimizer state as named tensors "<parameter index>.<field>" (SGD: momentum_buffer; Adam/AdamW:
// step, exp_avg, exp_avg_sq, max_exp_avg_sq), CPU copies, for checkpoints.
NamedTensors optimizer_state(torch::optim::Optimizer& opt, const std::vector<torch::Tensor>& params);
// Restores what optimizer_state() wrote. Every tensor is checked against its parameter (shape,
// dtype) before any state is replaced; UserError names `source` and the tensor.
void load_optimizer_state(torch::optim::Optimizer& opt, const std::vector<torch::Tensor>& params,
                          const NamedTensors& state, const std::string& source);

// Bytes of the tensors the optimizer keeps (momentum buffers; Adam's moments), on this rank.
int64_t optimizer_state_bytes(torch::optim::Optimizer& opt);

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

// The L2 norm over all gradient tensors is computed as PyTorch does: norm_of_norms(grad_norms(grads)),
// the per-tensor norms (one multi-tensor pass, in their dtype) and their norm.
torch::Tensor grad_norms(const std::vector<torch::Tensor>& grads);
torch::Tensor norm_of_norms(const torch::Tensor& norms);
// PyTorch's clip_grad_norm_ on the device, given the norm (a 0-d tensor): multiply by
// min(1, max_norm / (norm + 1e-6)), computed in the gradients' dtype as torch does, so results match
// it bit for bit. No host read.
void clip_to_norm(const std::vector<torch::Tensor>& grads, const torch::Tensor& norm, double max_norm);

}  // namespace vdp
