#include "vdp/train/fused_optim.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <array>
#include <functional>
#include <map>
#include <tuple>

#include "vdp/core/error.h"

namespace vdp {
namespace {

// The multi-tensor kernels want one device and one dtype per call (as PyTorch groups them).
using GroupKey = std::tuple<int, int, int>;  // device type, device index, dtype
GroupKey key_of(const torch::Tensor& p) {
  return {static_cast<int>(p.device().type()), p.device().index(), static_cast<int>(p.scalar_type())};
}

struct AdamLists {
  std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps;
};

using StepCounts = std::unordered_map<const void*, std::pair<int64_t, torch::Tensor>>;

template <typename Options, typename State, typename Kernel>
void adam_like_step(torch::optim::Optimizer& opt, StepCounts& steps, const std::optional<torch::Tensor>& found_inf,
                    std::vector<std::function<void()>>& undo, Kernel kernel) {
  torch::NoGradGuard no_grad;
  undo.clear();
  for (auto& group : opt.param_groups()) {
    auto& o = static_cast<Options&>(group.options());
    std::map<GroupKey, AdamLists> lists;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      void* const key = p.unsafeGetTensorImpl();
      auto& slot = opt.state()[key];
      const bool fresh = !slot;
      if (fresh) {  // LibTorch's initial state
        auto s = std::make_unique<State>();
        s->step(0);
        s->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        s->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        if (o.amsgrad()) s->max_exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        slot = std::move(s);
      }
      auto& s = static_cast<State&>(*slot);
      // The kernel reads the count after this step from a float32 tensor on the device.
      auto& [count, t] = steps[key];
      if (!t.defined() || count != s.step())
        t = torch::full({}, static_cast<double>(s.step()), p.options().dtype(torch::kFloat32));
      s.step(s.step() + 1);
      count = s.step();
      // A skipped step takes back its count, or the whole state it created.
      if (fresh) undo.push_back([&opt, &steps, key] { opt.state().erase(key), steps.erase(key); });
      else undo.push_back([&s, &count = count] { s.step(s.step() - 1), --count; });
      AdamLists& l = lists[key_of(p)];
      l.params.push_back(p);
      l.grads.push_back(p.grad());
      l.exp_avgs.push_back(s.exp_avg());
      l.exp_avg_sqs.push_back(s.exp_avg_sq());
      if (o.amsgrad()) l.max_exp_avg_sqs.push_back(s.max_exp_avg_sq());
      l.steps.push_back(t);
    }
    const auto [beta1, beta2] = o.betas();
    for (auto& [key, l] : lists) {
      // The kernel reads the count after this step; a step skipped on the device takes it back, as
      // PyTorch's fused Adam does.
      at::_foreach_add_(l.steps, 1);
      kernel(l.params, l.grads, l.exp_avgs, l.exp_avg_sqs, l.max_exp_avg_sqs, l.steps, o.lr(), beta1, beta2,
             o.weight_decay(), o.eps(), o.amsgrad(), /*maximize=*/false, /*grad_scale=*/std::nullopt, found_inf);
      if (found_inf) at::_foreach_sub_(l.steps, std::vector<torch::Tensor>(l.steps.size(), found_inf->squeeze()));
    }
  }
}

}  // namespace

torch::Tensor FusedSGD::step(LossClosure closure) {
  VDP_ASSERT(!closure, "the fused optimizers take no closure");
  torch::NoGradGuard no_grad;
  started_.clear();
  for (auto& group : param_groups()) {
    auto& o = static_cast<torch::optim::SGDOptions&>(group.options());
    // Per (device, dtype), parameters whose momentum buffer starts now (buffer = gradient, [1]) and
    // those that have one ([0]).
    std::map<GroupKey, std::array<std::array<std::vector<torch::Tensor>, 3>, 2>> lists;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      int first = 0;
      auto& l = lists[key_of(p)];
      if (o.momentum() != 0) {
        auto& slot = state_[p.unsafeGetTensorImpl()];
        if (!slot || !static_cast<torch::optim::SGDParamState&>(*slot).momentum_buffer().defined()) {
          auto s = std::make_unique<torch::optim::SGDParamState>();
          s->momentum_buffer(torch::zeros_like(p, torch::MemoryFormat::Preserve));
          started_.push_back(s.get());
          slot = std::move(s);
          first = 1;
        }
        l[first][2].push_back(static_cast<torch::optim::SGDParamState&>(*slot).momentum_buffer());
      }
      l[first][0].push_back(p);
      l[first][1].push_back(p.grad());
    }
    for (auto& [key, l] : lists)
      for (int first : {0, 1})
        if (!l[first][0].empty())
          at::_fused_sgd_(l[first][0], l[first][1], l[first][2], o.weight_decay(), o.momentum(), o.lr(),
                          o.dampening(), o.nesterov(), /*maximize=*/false, /*is_first_step=*/first == 1,
                          /*grad_scale=*/std::nullopt, flag());
  }
  return {};
}

void FusedSGD::step_was_skipped() {
  // The kernel left a new buffer at zero: the next step starts it again (buffer = gradient).
  for (auto* s : started_) s->momentum_buffer(torch::Tensor());
  started_.clear();
}

torch::Tensor FusedAdam::step(LossClosure closure) {
  VDP_ASSERT(!closure, "the fused optimizers take no closure");
  adam_like_step<torch::optim::AdamOptions, torch::optim::AdamParamState>(
      *this, steps_, flag(), undo_, [](auto&&... a) { at::_fused_adam_(std::forward<decltype(a)>(a)...); });
  return {};
}

void FusedAdam::step_was_skipped() {
  for (auto& f : undo_) f();
  undo_.clear();
}

torch::Tensor FusedAdamW::step(LossClosure closure) {
  VDP_ASSERT(!closure, "the fused optimizers take no closure");
  adam_like_step<torch::optim::AdamWOptions, torch::optim::AdamWParamState>(
      *this, steps_, flag(), undo_, [](auto&&... a) { at::_fused_adamw_(std::forward<decltype(a)>(a)...); });
  return {};
}

void FusedAdamW::step_was_skipped() {
  for (auto& f : undo_) f();
  undo_.clear();
}

}  // namespace vdp
