#include "vdp/optim/fused_optim.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <array>
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

void add_to_key(std::vector<const void*>& out, const std::vector<torch::Tensor>& list) {
  for (const auto& t : list) out.push_back(t.data_ptr());
  out.push_back(nullptr);  // a list boundary
}

using StepCounts = std::unordered_map<const void*, std::pair<int64_t, torch::Tensor>>;
using SpareAdamState = std::unordered_map<const void*, std::array<torch::Tensor, 3>>;

template <typename Options, typename State>
void adam_like_prepare(torch::optim::Optimizer& opt, StepCounts& steps, SpareAdamState& spare,
                       std::vector<std::function<void()>>& undo, std::vector<AdamCall>& calls) {
  undo.clear();
  calls.clear();
  for (auto& group : opt.param_groups()) {
    auto& o = static_cast<Options&>(group.options());
    std::map<GroupKey, AdamCall> by_key;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      void* const key = p.unsafeGetTensorImpl();
      auto& slot = opt.state()[key];
      const bool fresh = !slot;
      if (fresh) {  // LibTorch's initial state, in the tensors of a skipped first step if there was one
        torch::NoGradGuard no_grad;
        auto s = std::make_unique<State>();
        s->step(0);
        auto zeros = [&](torch::Tensor kept) {
          return kept.defined() ? kept.zero_() : torch::zeros_like(p, torch::MemoryFormat::Preserve);
        };
        const auto kept = spare.find(key);
        const bool reuse = kept != spare.end();
        s->exp_avg(zeros(reuse ? kept->second[0] : torch::Tensor()));
        s->exp_avg_sq(zeros(reuse ? kept->second[1] : torch::Tensor()));
        if (o.amsgrad()) s->max_exp_avg_sq(zeros(reuse ? kept->second[2] : torch::Tensor()));
        if (reuse) spare.erase(kept);
        slot = std::move(s);
      }
      auto& s = static_cast<State&>(*slot);
      // The kernel reads the count after this step from a float32 tensor on the device.
      auto& [count, t] = steps[key];
      if (!t.defined() || count != s.step())
        t = torch::full({}, static_cast<double>(s.step()), p.options().dtype(torch::kFloat32));
      s.step(s.step() + 1);
      count = s.step();
      // A skipped step takes back its count, or the whole state it created: the state's tensors (and
      // the count's, back at 0 on the device) are kept for the next first step, so that the kernels'
      // lists, and a captured tail's key, stay the same (Note [a step in two halves]).
      if (fresh)
        undo.push_back([&opt, &spare, &count = count, key] {
          auto& st = static_cast<State&>(*opt.state().at(key));
          spare[key] = {st.exp_avg(), st.exp_avg_sq(), st.max_exp_avg_sq()};
          opt.state().erase(key);
          count = 0;
        });
      else
        undo.push_back([&s, &count = count] { s.step(s.step() - 1), --count; });
      AdamCall& c = by_key[key_of(p)];
      c.params.push_back(p);
      c.grads.push_back(p.grad());
      c.exp_avgs.push_back(s.exp_avg());
      c.exp_avg_sqs.push_back(s.exp_avg_sq());
      if (o.amsgrad()) c.max_exp_avg_sqs.push_back(s.max_exp_avg_sq());
      c.steps.push_back(t);
    }
    const auto [beta1, beta2] = o.betas();
    for (auto& [key, c] : by_key) {
      c.options = &o;
      c.beta1 = beta1, c.beta2 = beta2, c.weight_decay = o.weight_decay(), c.eps = o.eps(), c.amsgrad = o.amsgrad();
      calls.push_back(std::move(c));
    }
  }
}

std::vector<const void*> adam_like_launch_key(const std::vector<AdamCall>& calls) {
  std::vector<const void*> id;
  for (const auto& c : calls)
    for (const auto* l : {&c.params, &c.grads, &c.exp_avgs, &c.exp_avg_sqs, &c.max_exp_avg_sqs, &c.steps})
      add_to_key(id, *l);
  return id;
}

template <typename Kernel>
void adam_like_launch(const std::vector<AdamCall>& calls, const torch::Tensor& lr,
                      const std::optional<torch::Tensor>& found_inf, Kernel kernel) {
  torch::NoGradGuard no_grad;
  for (const auto& c : calls) {
    // The kernel reads the count after this step; a step skipped on the device takes it back, as
    // PyTorch's fused Adam does.
    at::_foreach_add_(c.steps, 1);
    if (lr.defined())
      kernel(c.params, c.grads, c.exp_avgs, c.exp_avg_sqs, c.max_exp_avg_sqs, c.steps, lr, c.beta1, c.beta2,
             c.weight_decay, c.eps, c.amsgrad, /*maximize=*/false, /*grad_scale=*/std::nullopt, found_inf);
    else
      kernel(c.params, c.grads, c.exp_avgs, c.exp_avg_sqs, c.max_exp_avg_sqs, c.steps, c.options->get_lr(), c.beta1,
             c.beta2, c.weight_decay, c.eps, c.amsgrad, /*maximize=*/false, /*grad_scale=*/std::nullopt, found_inf);
    if (found_inf) at::_foreach_sub_(c.steps, std::vector<torch::Tensor>(c.steps.size(), found_inf->squeeze()));
  }
}

}  // namespace

torch::Tensor FusedSGD::step(LossClosure closure) {
  VDP_ASSERT(!closure, "the fused optimizers take no closure");
  prepare();
  launch();
  return {};
}

void FusedSGD::prepare() {
  started_.clear();
  calls_.clear();
  for (auto& group : param_groups()) {
    auto& o = static_cast<torch::optim::SGDOptions&>(group.options());
    // Per (device, dtype), parameters whose momentum buffer starts now (buffer = gradient) and those
    // that have one.
    std::map<std::pair<GroupKey, bool>, Call> by_key;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      bool first = false;
      torch::Tensor buf;
      if (o.momentum() != 0) {
        auto& slot = state_[p.unsafeGetTensorImpl()];
        if (!slot || !static_cast<torch::optim::SGDParamState&>(*slot).momentum_buffer().defined()) {
          // The kernel's first step writes the buffer (buffer = gradient): the one of a skipped first
          // step is taken again, so that the lists keep their addresses (Note [a step in two halves]).
          torch::NoGradGuard no_grad;
          auto s = std::make_unique<torch::optim::SGDParamState>();
          const auto kept = spare_.find(p.unsafeGetTensorImpl());
          if (kept != spare_.end()) {
            s->momentum_buffer(kept->second);
            spare_.erase(kept);
          } else {
            s->momentum_buffer(torch::zeros_like(p, torch::MemoryFormat::Preserve));
          }
          started_.emplace_back(p.unsafeGetTensorImpl(), s.get());
          slot = std::move(s);
          first = true;
        }
        buf = static_cast<torch::optim::SGDParamState&>(*slot).momentum_buffer();
      }
      Call& c = by_key[{key_of(p), first}];
      c.params.push_back(p);
      c.grads.push_back(p.grad());
      if (buf.defined()) c.bufs.push_back(buf);
    }
    for (auto& [key, c] : by_key) {
      c.options = &o;
      c.first = key.second;
      calls_.push_back(std::move(c));
    }
  }
}

std::vector<const void*> FusedSGD::launch_key() const {
  std::vector<const void*> id;
  for (const auto& c : calls_) {
    static const char kFirst = 0;
    id.push_back(c.first ? &kFirst : nullptr);  // the kernel differs for buffers that start now
    for (const auto* l : {&c.params, &c.grads, &c.bufs}) add_to_key(id, *l);
  }
  return id;
}

void FusedSGD::launch() {
  torch::NoGradGuard no_grad;
  for (const auto& c : calls_) {
    const auto& o = *c.options;
    if (lr_.defined())
      at::_fused_sgd_(c.params, c.grads, c.bufs, o.weight_decay(), o.momentum(), lr_, o.dampening(), o.nesterov(),
                      /*maximize=*/false, /*is_first_step=*/c.first, /*grad_scale=*/std::nullopt, flag());
    else
      at::_fused_sgd_(c.params, c.grads, c.bufs, o.weight_decay(), o.momentum(), o.lr(), o.dampening(), o.nesterov(),
                      /*maximize=*/false, /*is_first_step=*/c.first, /*grad_scale=*/std::nullopt, flag());
  }
}

void FusedSGD::step_was_skipped() {
  // The kernel left a new buffer at zero: the next step starts it again (buffer = gradient).
  for (auto& [key, s] : started_) {
    spare_[key] = s->momentum_buffer();
    s->momentum_buffer(torch::Tensor());
  }
  started_.clear();
}

template <typename Base, typename Options, typename State, bool Decoupled>
torch::Tensor FusedAdamLike<Base, Options, State, Decoupled>::step(torch::optim::Optimizer::LossClosure closure) {
  VDP_ASSERT(!closure, "the fused optimizers take no closure");
  prepare();
  launch();
  return {};
}

template <typename Base, typename Options, typename State, bool Decoupled>
void FusedAdamLike<Base, Options, State, Decoupled>::prepare() {
  adam_like_prepare<Options, State>(*this, steps_, spare_, undo_, calls_);
}

template <typename Base, typename Options, typename State, bool Decoupled>
std::vector<const void*> FusedAdamLike<Base, Options, State, Decoupled>::launch_key() const {
  return adam_like_launch_key(calls_);
}

template <typename Base, typename Options, typename State, bool Decoupled>
void FusedAdamLike<Base, Options, State, Decoupled>::launch() {
  if (Decoupled)
    adam_like_launch(calls_, lr_, flag(), [](auto&&... a) { at::_fused_adamw_(std::forward<decltype(a)>(a)...); });
  else
    adam_like_launch(calls_, lr_, flag(), [](auto&&... a) { at::_fused_adam_(std::forward<decltype(a)>(a)...); });
}

template <typename Base, typename Options, typename State, bool Decoupled>
void FusedAdamLike<Base, Options, State, Decoupled>::step_was_skipped() {
  for (auto& f : undo_) f();
  undo_.clear();
}

template class FusedAdamLike<torch::optim::Adam, torch::optim::AdamOptions, torch::optim::AdamParamState, false>;
template class FusedAdamLike<torch::optim::AdamW, torch::optim::AdamWOptions, torch::optim::AdamWParamState, true>;

void FusedOptimizer::set_lr(double lr) {
  for (auto& group : base().param_groups()) group.options().set_lr(lr);
  if (lr_.defined()) lr_.fill_(lr);  // read by the kernels when they run (a graph's replay included)
}

}  // namespace vdp
