#include "vdp/nn/sync_batchnorm.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/nn/functional/batchnorm.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/sequential.h>

#include <cmath>

#include "vdp/core/error.h"

namespace vdp {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// float32 for float16/bfloat16 inputs, the input's own dtype otherwise (Note [SyncBatchNorm precision]).
torch::ScalarType stat_dtype(const torch::Tensor& x) {
  const auto t = x.scalar_type();
  return t == torch::kHalf || t == torch::kBFloat16 ? torch::kFloat : t;
}

std::vector<int64_t> reduce_dims(const torch::Tensor& x) {
  std::vector<int64_t> d{0};
  for (int64_t i = 2; i < x.dim(); ++i) d.push_back(i);
  return d;
}

std::vector<int64_t> channel_shape(const torch::Tensor& x) {
  std::vector<int64_t> s(static_cast<size_t>(x.dim()), 1);
  s[1] = x.size(1);
  return s;
}

// Note [SyncBatchNorm statistics]: the global mean is the count-weighted mean of the ranks'
// means, and the global sum of squared deviations is Σ M2_r + Σ n_r (mean_r − mean)²: each rank's
// deviations are taken from its own mean, and only the between-rank term uses the global mean,
// so no E[x²] − mean² cancellation occurs. Ranks with n_r = 0 contribute nothing.
struct SyncBNFunction : public torch::autograd::Function<SyncBNFunction> {
  // Absent weight, bias or running statistics arrive as 0-element tensors: autograd functions
  // cannot take undefined tensors.
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x_in, const torch::Tensor& weight_in,
                               const torch::Tensor& bias_in, const torch::Tensor& running_mean,
                               const torch::Tensor& running_var, int64_t comm_address, double momentum,
                               double eps) {
    const torch::Tensor weight = weight_in.numel() ? weight_in : torch::Tensor();
    const torch::Tensor bias = bias_in.numel() ? bias_in : torch::Tensor();
    auto* comm = reinterpret_cast<Communicator*>(comm_address);
    // Note [SyncBatchNorm precision]: statistics, counts and sums are kept in float32 for float16
    // and bfloat16 inputs, as PyTorch does: in float16 a per-channel count above 65504 overflows,
    // and bfloat16 keeps 8 bits of counts and sums. The output returns to the input's dtype.
    const torch::Tensor x = stat_dtype(x_in) == x_in.scalar_type() ? x_in : x_in.to(stat_dtype(x_in));
    const int64_t c = x.size(1);
    const auto dims = reduce_dims(x);
    const auto shape = channel_shape(x);
    const int64_t n_local = c > 0 ? x.numel() / c : 0;
    const int world = comm ? comm->size() : 1, rank = comm ? comm->rank() : 0;

    torch::Tensor table = torch::zeros({world, 2 * c + 1}, x.options());
    torch::Tensor mine = table[rank];
    if (n_local > 0) {
      torch::Tensor mean_l = x.mean(dims);
      mine.narrow(0, 0, c).copy_(mean_l);
      mine.narrow(0, c, c).copy_((x - mean_l.view(shape)).pow(2).sum(dims));
      mine[2 * c].fill_(static_cast<double>(n_local));
    }
    if (world > 1) comm->all_reduce_sum(table);

    const torch::Tensor counts = table.select(1, 2 * c).unsqueeze(1);  // [W, 1]
    const torch::Tensor n = counts.sum();
    const torch::Tensor safe_n = n.clamp_min(1);
    const torch::Tensor means = table.narrow(1, 0, c);
    const torch::Tensor mean = (means * counts).sum(0) / safe_n;
    const torch::Tensor m2 = table.narrow(1, c, c).sum(0) + (counts * (means - mean).pow(2)).sum(0);
    const torch::Tensor invstd = (m2 / safe_n + eps).rsqrt();

    torch::Tensor scale = weight.defined() ? invstd * weight : invstd;
    torch::Tensor y = (x - mean.view(shape)) * scale.view(shape);
    if (bias.defined()) y = y + bias.view(shape);

    if (running_mean.numel()) {
      torch::NoGradGuard no_grad;
      // Running variance is unbiased over the whole synchronized batch, as in PyTorch.
      running_mean.mul_(1 - momentum).add_(mean * momentum);
      running_var.mul_(1 - momentum).add_(m2 / (n - 1).clamp_min(1) * momentum);
    }
    // The low-precision input is saved (half the memory) and widened again in backward.
    ctx->save_for_backward({x_in, weight, mean, invstd, n});
    ctx->saved_data["comm"] = comm_address;
    ctx->saved_data["has_bias"] = bias.defined();
    return y.to(x_in.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x_in = saved[0], &weight = saved[1], &mean = saved[2], &invstd = saved[3], &n = saved[4];
    const auto wide = stat_dtype(x_in);  // Note [SyncBatchNorm precision]
    const torch::Tensor x = x_in.to(wide);
    auto* comm = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    const torch::Tensor g = grads[0].defined() ? grads[0].to(wide) : torch::zeros_like(x);
    const int64_t c = x.size(1);
    const auto dims = reduce_dims(x);
    const auto shape = channel_shape(x);

    // Local sums Σdy and Σdy·(x − mean); their global versions drive the input gradient, while
    // the local ones are this rank's share of the bias and weight gradients.
    torch::Tensor sums = torch::zeros({2 * c}, x.options());
    if (x.numel() > 0) {
      sums.narrow(0, 0, c).copy_(g.sum(dims));
      sums.narrow(0, c, c).copy_((g * (x - mean.view(shape))).sum(dims));
    }
    const torch::Tensor local = sums.clone();
    if (comm && comm->size() > 1) comm->all_reduce_sum(sums);
    const torch::Tensor safe_n = n.clamp_min(1);
    const torch::Tensor sum_dy = sums.narrow(0, 0, c), sum_dy_xmu = sums.narrow(0, c, c);

    torch::Tensor scale = weight.defined() ? invstd * weight : invstd;
    torch::Tensor grad_x = (g - (sum_dy / safe_n).view(shape) -
                            (x - mean.view(shape)) * (invstd.pow(2) * sum_dy_xmu / safe_n).view(shape)) *
                           scale.view(shape);
    torch::Tensor grad_w = weight.defined() ? (local.narrow(0, c, c) * invstd).to(weight.scalar_type()) : torch::Tensor();
    torch::Tensor grad_b = ctx->saved_data["has_bias"].toBool() ? local.narrow(0, 0, c).to(weight.defined() ? weight.scalar_type() : wide) : torch::Tensor();
    return {grad_x.to(x_in.scalar_type()), grad_w, grad_b, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(),
            torch::Tensor()};
  }
};

template <typename BatchNormImpl>
std::shared_ptr<SyncBatchNormImpl> sync_from(const std::shared_ptr<torch::nn::Module>& m, int dims) {
  auto bn = std::dynamic_pointer_cast<BatchNormImpl>(m);
  if (!bn) return nullptr;
  auto sync = std::make_shared<SyncBatchNormImpl>(bn->options, dims);
  const torch::Tensor like = bn->running_mean.defined() ? bn->running_mean : bn->weight;
  if (like.defined()) sync->to(like.device(), like.scalar_type());
  torch::NoGradGuard no_grad;
  auto copy = [](torch::Tensor& dst, const torch::Tensor& src) {
    if (src.defined()) dst.copy_(src);
  };
  copy(sync->weight, bn->weight);
  copy(sync->bias, bn->bias);
  copy(sync->running_mean, bn->running_mean);
  copy(sync->running_var, bn->running_var);
  copy(sync->num_batches_tracked, bn->num_batches_tracked);
  sync->train(bn->is_training());
  return sync;
}

std::shared_ptr<SyncBatchNormImpl> as_sync(const std::shared_ptr<torch::nn::Module>& m) {
  if (auto s = sync_from<torch::nn::BatchNorm1dImpl>(m, 1)) return s;
  if (auto s = sync_from<torch::nn::BatchNorm2dImpl>(m, 2)) return s;
  return sync_from<torch::nn::BatchNorm3dImpl>(m, 3);
}

}  // namespace

SyncBatchNormImpl::SyncBatchNormImpl(const torch::nn::BatchNormOptions& opts, int d) : options(opts), dims(d) {
  VDP_CHECK(dims >= 1 && dims <= 3, "SyncBatchNorm: dims must be 1, 2 or 3, not ", dims);
  reset();
}

void SyncBatchNormImpl::reset() {
  const int64_t c = options.num_features();
  if (options.affine()) {
    weight = register_parameter("weight", torch::ones({c}));
    bias = register_parameter("bias", torch::zeros({c}));
  }
  if (options.track_running_stats()) {
    running_mean = register_buffer("running_mean", torch::zeros({c}));
    running_var = register_buffer("running_var", torch::ones({c}));
    num_batches_tracked = register_buffer("num_batches_tracked", torch::tensor(0, torch::kLong));
  }
}

torch::Tensor SyncBatchNormImpl::forward(const torch::Tensor& x) {
  const bool shape_ok = dims == 1 ? (x.dim() == 2 || x.dim() == 3) : x.dim() == dims + 2;
  VDP_CHECK(shape_ok, "SyncBatchNorm", dims, "d expects a ", dims == 1 ? "2-d or 3-d" : std::to_string(dims + 2) + "-d",
            " input, got ", x.dim(), "-d");
  VDP_CHECK(x.size(1) == options.num_features(), "SyncBatchNorm: input has ", x.size(1), " channels, the layer ",
            options.num_features());
  namespace F = torch::nn::functional;
  if (!is_training()) {
    // Running statistics, or (without them) the local batch's: no communication in eval mode.
    return F::batch_norm(x, running_mean, running_var,
                         F::BatchNormFuncOptions().weight(weight).bias(bias).training(!options.track_running_stats())
                             .eps(options.eps()));
  }
  double momentum = options.momentum().value_or(0.0);
  if (options.track_running_stats()) {
    num_batches_tracked += 1;
    if (!options.momentum().has_value()) momentum = 1.0 / num_batches_tracked.item<double>();
  }
  const torch::Tensor none = torch::empty({0}, x.options());
  auto or_none = [&](const torch::Tensor& t) { return t.defined() ? t : none; };
  return SyncBNFunction::apply(x, or_none(weight), or_none(bias), or_none(running_mean), or_none(running_var),
                               reinterpret_cast<int64_t>(comm_.get()), momentum, options.eps());
}

std::shared_ptr<torch::nn::Module> convert_sync_batchnorm(std::shared_ptr<torch::nn::Module> module) {
  if (auto s = as_sync(module)) return s;
  if (auto seq = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(module)) {
    // Sequential calls its elements through its own AnyModule list: replace them there (in place,
    // so holders of the Sequential stay valid) and in the registry of children.
    const auto names = seq->named_children();
    auto it = seq->begin();
    for (size_t i = 0; i < seq->size(); ++i, ++it) {
      auto child = seq->ptr(i);
      auto converted = convert_sync_batchnorm(child);
      if (converted == child) continue;
      auto sync = std::dynamic_pointer_cast<SyncBatchNormImpl>(converted);
      *it = torch::nn::AnyModule(SyncBatchNorm(sync));
      seq->replace_module(names[i].key(), sync);
    }
    return module;
  }
  for (const auto& child : module->named_children()) {
    auto converted = convert_sync_batchnorm(child.value());
    if (converted != child.value()) module->replace_module(child.key(), converted);
  }
  return module;
}

int attach_communicator(torch::nn::Module& module, const std::shared_ptr<Communicator>& comm) {
  int found = 0;
  for (const auto& m : module.modules(/*include_self=*/true)) {
    if (auto s = std::dynamic_pointer_cast<SyncBatchNormImpl>(m)) {
      s->set_communicator(comm);
      ++found;
    }
  }
  return found;
}

double window_momentum(double momentum, int64_t micro_steps) {
  return 1.0 - std::pow(1.0 - momentum, 1.0 / static_cast<double>(std::max<int64_t>(1, micro_steps)));
}

WindowMomentum::WindowMomentum(torch::nn::Module& module) {
  for (const auto& m : module.modules(/*include_self=*/true)) {
    torch::nn::BatchNormOptions* opts = nullptr;
    if (auto s = std::dynamic_pointer_cast<SyncBatchNormImpl>(m)) opts = &s->options;
    if (auto b = std::dynamic_pointer_cast<torch::nn::BatchNorm1dImpl>(m)) opts = &b->options;
    if (auto b = std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(m)) opts = &b->options;
    if (auto b = std::dynamic_pointer_cast<torch::nn::BatchNorm3dImpl>(m)) opts = &b->options;
    // A cumulative average (momentum None) has no time constant to preserve.
    if (opts && opts->momentum().has_value()) layers_.push_back({opts, *opts->momentum()});
  }
}

void WindowMomentum::set_micro_steps(int64_t micro_steps) {
  if (micro_steps == current_) return;
  current_ = micro_steps;
  for (auto& l : layers_) l.options->momentum(window_momentum(l.base, micro_steps));
}

}  // namespace vdp
