#include "vdp/optim/optim.h"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <ATen/ATen.h>

#include <cmath>

#include "vdp/core/error.h"
#include "vdp/optim/fused_optim.h"

namespace vdp {

std::unique_ptr<FusedOptimizer> make_optimizer(const Config& c, const std::vector<torch::Tensor>& params) {
  using namespace torch::optim;
  // ATen's fused multi-tensor kernels over all parameters (optim/fused_optim.h), with LibTorch's
  // options and state.
  switch (c.optimizer) {
    case OptimizerKind::Sgd:
      return std::make_unique<FusedSGD>(
          params, SGDOptions(c.lr).momentum(c.momentum).nesterov(c.nesterov).weight_decay(c.weight_decay));
    case OptimizerKind::Adam:
      return std::make_unique<FusedAdam>(
          params,
          AdamOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(c.weight_decay).amsgrad(c.amsgrad));
    case OptimizerKind::AdamW:
      return std::make_unique<FusedAdamW>(
          params,
          AdamWOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(c.weight_decay).amsgrad(c.amsgrad));
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

namespace {

torch::Tensor cpu_copy(const torch::Tensor& t) { return t.detach().to(torch::kCPU).clone(); }

template <typename State>
void save_adam_like(const State& st, const std::string& prefix, NamedTensors& out) {
  out.emplace_back(prefix + "step", torch::tensor(st.step(), torch::kInt64));
  out.emplace_back(prefix + "exp_avg", cpu_copy(st.exp_avg()));
  out.emplace_back(prefix + "exp_avg_sq", cpu_copy(st.exp_avg_sq()));
  if (st.max_exp_avg_sq().defined()) out.emplace_back(prefix + "max_exp_avg_sq", cpu_copy(st.max_exp_avg_sq()));
}

}  // namespace

NamedTensors optimizer_state(torch::optim::Optimizer& opt, const std::vector<torch::Tensor>& params) {
  NamedTensors out;
  for (size_t i = 0; i < params.size(); ++i) {
    auto it = opt.state().find(params[i].unsafeGetTensorImpl());
    if (it == opt.state().end()) continue;
    const std::string prefix = std::to_string(i) + ".";
    if (auto* s = dynamic_cast<torch::optim::SGDParamState*>(it->second.get())) {
      if (s->momentum_buffer().defined()) out.emplace_back(prefix + "momentum_buffer", cpu_copy(s->momentum_buffer()));
    } else if (auto* a = dynamic_cast<torch::optim::AdamParamState*>(it->second.get())) {
      save_adam_like(*a, prefix, out);
    } else if (auto* w = dynamic_cast<torch::optim::AdamWParamState*>(it->second.get())) {
      save_adam_like(*w, prefix, out);
    } else {
      VDP_ASSERT(false, "unknown optimizer state type");
    }
  }
  return out;
}

void load_optimizer_state(torch::optim::Optimizer& opt, const std::vector<torch::Tensor>& params,
                          const NamedTensors& state, const std::string& source) {
  std::map<std::string, torch::Tensor> by_name(state.begin(), state.end());
  auto take = [&](size_t i, const char* field, bool like_param, bool required) -> torch::Tensor {
    auto it = by_name.find(std::to_string(i) + "." + field);
    if (it == by_name.end()) {
      VDP_CHECK(!required, "'", source, "' lacks optimizer tensor ", i, ".", field, " (checkpoint of another optimizer?)");
      return {};
    }
    torch::Tensor t = it->second;
    by_name.erase(it);
    if (like_param) {
      VDP_CHECK(t.sizes() == params[i].sizes() && t.scalar_type() == params[i].scalar_type(), "'", source,
                "': optimizer tensor ", i, ".", field, " is ", t.scalar_type(), t.sizes(), " but parameter ", i, " is ",
                params[i].scalar_type(), params[i].sizes(), " (checkpoint of another model or dtype?)");
      return t.to(params[i].device());
    }
    VDP_CHECK(t.numel() == 1 && t.scalar_type() == torch::kInt64, "'", source, "': optimizer tensor ", i, ".", field,
              " must be one int64");
    return t;
  };
  // Build every new state first; replace the optimizer's only when all of them checked out.
  std::vector<std::pair<void*, std::unique_ptr<torch::optim::OptimizerParamState>>> built;
  const bool sgd = dynamic_cast<torch::optim::SGD*>(&opt) != nullptr;
  const bool adamw = dynamic_cast<torch::optim::AdamW*>(&opt) != nullptr;
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string prefix = std::to_string(i) + ".";
    bool any = false;
    for (const auto& [k, v] : by_name) any |= k.rfind(prefix, 0) == 0;
    if (!any) continue;
    if (sgd) {
      auto s = std::make_unique<torch::optim::SGDParamState>();
      s->momentum_buffer(take(i, "momentum_buffer", true, true));
      built.emplace_back(params[i].unsafeGetTensorImpl(), std::move(s));
    } else {
      auto fill = [&](auto st) {
        st->step(take(i, "step", false, true).template item<int64_t>());
        st->exp_avg(take(i, "exp_avg", true, true));
        st->exp_avg_sq(take(i, "exp_avg_sq", true, true));
        st->max_exp_avg_sq(take(i, "max_exp_avg_sq", true, false));
        built.emplace_back(params[i].unsafeGetTensorImpl(), std::move(st));
      };
      if (adamw) fill(std::make_unique<torch::optim::AdamWParamState>());
      else fill(std::make_unique<torch::optim::AdamParamState>());
    }
  }
  VDP_CHECK(by_name.empty(), "'", source, "' holds optimizer tensor '", by_name.begin()->first,
            "' that this model and optimizer do not have (checkpoint of another model or optimizer?)");
  opt.state().clear();
  for (auto& [key, st] : built) opt.state()[key] = std::move(st);
}

int64_t optimizer_state_bytes(torch::optim::Optimizer& opt) {
  int64_t n = 0;
  auto add = [&](const torch::Tensor& t) {
    if (t.defined()) n += static_cast<int64_t>(t.nbytes());
  };
  for (const auto& [key, st] : opt.state()) {
    if (auto* s = dynamic_cast<torch::optim::SGDParamState*>(st.get())) {
      add(s->momentum_buffer());
    } else if (auto* a = dynamic_cast<torch::optim::AdamParamState*>(st.get())) {
      add(a->exp_avg()), add(a->exp_avg_sq()), add(a->max_exp_avg_sq());
    } else if (auto* w = dynamic_cast<torch::optim::AdamWParamState*>(st.get())) {
      add(w->exp_avg()), add(w->exp_avg_sq()), add(w->max_exp_avg_sq());
    }
  }
  return n;
}

torch::Tensor grad_norms(const std::vector<torch::Tensor>& grads) { return at::stack(at::_foreach_norm(grads, 2)); }

torch::Tensor norm_of_norms(const torch::Tensor& norms) { return at::linalg_vector_norm(norms, 2); }

void clip_to_norm(const std::vector<torch::Tensor>& grads, const torch::Tensor& norm, double max_norm) {
  const torch::Tensor coef = at::clamp_max(max_norm / (norm + 1e-6), 1.0);
  at::_foreach_mul_(grads, coef);
}

}  // namespace vdp
