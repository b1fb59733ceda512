// SGD (momentum, Nesterov, weight decay), Adam and AdamW as ATen's fused multi-tensor kernels
// (_fused_sgd_, _fused_adam_, _fused_adamw_: one pass over all parameters, CPU and CUDA) instead of
// LibTorch's loop of a dozen operations per parameter. They keep LibTorch's classes and state
// (SGDParamState, AdamParamState, AdamWParamState), so checkpoints, load_optimizer_state and
// everything that reads the state are unchanged; only step() differs. Same semantics as PyTorch's
// `torch.optim.*(fused=True)`: equal to the loop to rounding (tests/optim/fused_optim_test.cpp).
//
// The kernels' device-side inf flag: skip_if(found_inf) hands them the scaler's flag (a [1] float32
// tensor, 1 or 0), so a step with inf/NaN gradients is skipped on the device without a host
// decision. The host learns of it later (Note [window read one late] in train/window.cpp) and
// calls step_was_skipped(), which takes back the host-side bookkeeping of that step (Adam's step
// count, SGD's "first step" of a new momentum buffer), so the state equals one where step() was
// never called. The tensors a skipped first step created are kept aside and taken again by the next
// first step, so that the kernels' lists, and a captured tail's key, do not change while a scaler
// backs off.
//
// Note [a step in two halves]: step() = prepare() + launch(). prepare() is the host's half: the
// counts, the state a first step creates, and the kernels' argument lists; launch() only enqueues
// the kernels over those lists. A CUDA graph of the window's tail (device/cuda_graph.h) captures
// launch() once and replays it while the host keeps calling prepare(); launch_key() names the lists
// (every tensor's address, and which buffers start now), equal from one step to the next once
// every parameter has its state, so a capture is made, and replayed, only while it holds. A
// replay cannot read a new host learning rate: lr_from() makes the kernels read it from a float32
// tensor on the device (ATen's tensor-lr kernels), which the host fills before each step.
#pragma once

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <array>
#include <functional>
#include <optional>
#include <unordered_map>
#include <vector>

namespace vdp {

// The one interface the window steps through: the host and device halves, the device-side skip
// and learning rate, and the LibTorch optimizer underneath (state, checkpoints).
class FusedOptimizer {
 public:
  virtual ~FusedOptimizer() = default;
  // The LibTorch optimizer (groups, options, state).
  virtual torch::optim::Optimizer& base() = 0;
  // Every group's learning rate, and the device rate of lr_from() when there is one.
  void set_lr(double lr);
  // Whether the kernels read the learning rate from the device (lr_from()).
  bool lr_on_device() const { return lr_.defined(); }
  // Every later step() is skipped on the device when `found_inf` (a [1] float32 device tensor) is 1
  // at the time the step runs; an undefined tensor turns this off.
  void skip_if(torch::Tensor found_inf) { found_inf_ = std::move(found_inf); }
  // The kernels read the learning rate from `lr` (a float32 scalar tensor on the parameters'
  // device) when they run, instead of each group's lr option; an undefined tensor turns this off.
  // Float32 rounds the rate: for float64 parameters it is 2^-24 relative off the option's value.
  void lr_from(torch::Tensor lr) { lr_ = std::move(lr); }
  // The host half of step() (Note [a step in two halves]).
  virtual void prepare() = 0;
  // The launch key of the kernels' lists of the last prepare(): every tensor's address, and which
  // buffers start now.
  virtual std::vector<const void*> launch_key() const = 0;
  // The device half: the kernels over the lists of the last prepare().
  virtual void launch() = 0;
  // The last step() was skipped on the device: undo its host bookkeeping.
  virtual void step_was_skipped() = 0;

 protected:
  std::optional<torch::Tensor> flag() const {
    return found_inf_.defined() ? std::optional<torch::Tensor>(found_inf_) : std::nullopt;
  }
  torch::Tensor found_inf_, lr_;
};

class FusedSGD : public torch::optim::SGD, public FusedOptimizer {
 public:
  using torch::optim::SGD::SGD;
  torch::optim::Optimizer& base() override { return *this; }
  torch::Tensor step(LossClosure closure = nullptr) override;
  void prepare() override;
  std::vector<const void*> launch_key() const override;
  void launch() override;
  void step_was_skipped() override;

 private:
  struct Call {  // one kernel: one group, device and dtype, buffers that start now or not
    const torch::optim::SGDOptions* options;
    bool first;
    std::vector<torch::Tensor> params, grads, bufs;
  };
  std::vector<Call> calls_;
  // Momentum buffers the last step() created, by parameter; buffers of skipped first steps, kept.
  std::vector<std::pair<const void*, torch::optim::SGDParamState*>> started_;
  std::unordered_map<const void*, torch::Tensor> spare_;
};

// Adam and AdamW keep the step count as LibTorch does (an int64 in the state, for checkpoints) and a
// float32 tensor of it on the parameter's device for the kernel (as PyTorch's fused Adam does),
// rebuilt from the state whenever the two disagree (a fresh state, a loaded checkpoint).
struct AdamCall {  // one kernel: one group, device and dtype
  const torch::optim::OptimizerOptions* options;
  double beta1, beta2, weight_decay, eps;
  bool amsgrad;
  std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps;
};

// Adam and AdamW differ only in their options, state and kernel (_fused_adam_, _fused_adamw_).
template <typename Base, typename Options, typename State, bool Decoupled>
class FusedAdamLike : public Base, public FusedOptimizer {
 public:
  using Base::Base;
  torch::optim::Optimizer& base() override { return *this; }
  torch::Tensor step(torch::optim::Optimizer::LossClosure closure = nullptr) override;
  void prepare() override;
  std::vector<const void*> launch_key() const override;
  void launch() override;
  void step_was_skipped() override;

 private:
  std::unordered_map<const void*, std::pair<int64_t, torch::Tensor>> steps_;
  std::vector<std::function<void()>> undo_;  // takes back the last step()'s counts
  // The state tensors of skipped first steps (exp_avg, exp_avg_sq, max_exp_avg_sq), kept.
  std::unordered_map<const void*, std::array<torch::Tensor, 3>> spare_;
  std::vector<AdamCall> calls_;
};

using FusedAdam = FusedAdamLike<torch::optim::Adam, torch::optim::AdamOptions, torch::optim::AdamParamState, false>;
using FusedAdamW =
    FusedAdamLike<torch::optim::AdamW, torch::optim::AdamWOptions, torch::optim::AdamWParamState, true>;
extern template class FusedAdamLike<torch::optim::Adam, torch::optim::AdamOptions, torch::optim::AdamParamState,
                                    false>;
extern template class FusedAdamLike<torch::optim::AdamW, torch::optim::AdamWOptions,
                                    torch::optim::AdamWParamState, true>;

}  // namespace vdp
