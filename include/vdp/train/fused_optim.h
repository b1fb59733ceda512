// SGD (momentum, Nesterov, weight decay), Adam and AdamW as ATen's fused multi-tensor kernels
// (_fused_sgd_, _fused_adam_, _fused_adamw_: one pass over all parameters, CPU and CUDA) instead of
// LibTorch's loop of a dozen operations per parameter. They keep LibTorch's classes and state
// (SGDParamState, AdamParamState, AdamWParamState), so checkpoints, load_optimizer_state and
// everything that reads the state are unchanged; only step() differs. Same semantics as PyTorch's
// `torch.optim.*(fused=True)`: equal to the loop to rounding (tests/train/fused_optim_test.cpp).
// The kernels' device-side inf flag (found_inf) is not used yet: the trainer decides a skipped step
// on the host (GradScaler::unscale_and_check) and then does not call step().
#pragma once

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <unordered_map>

namespace vdp {

class FusedSGD : public torch::optim::SGD {
 public:
  using torch::optim::SGD::SGD;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

// Adam and AdamW keep the step count as LibTorch does (an int64 in the state, for checkpoints) and a
// float32 tensor of it on the parameter's device for the kernel (as PyTorch's fused Adam does),
// rebuilt from the state whenever the two disagree (a fresh state, a loaded checkpoint).
class FusedAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;
  torch::Tensor step(LossClosure closure = nullptr) override;

 private:
  std::unordered_map<const void*, std::pair<int64_t, torch::Tensor>> steps_;
};

class FusedAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;
  torch::Tensor step(LossClosure closure = nullptr) override;

 private:
  std::unordered_map<const void*, std::pair<int64_t, torch::Tensor>> steps_;
};

}  // namespace vdp
