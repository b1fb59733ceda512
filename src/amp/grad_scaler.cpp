#include "vdp/amp/grad_scaler.h"

#include <ATen/ATen.h>

#include "vdp/core/error.h"

namespace vdp {

GradScaler::GradScaler(const GradScalerOptions& o, const torch::Device& device) : opts_(o) {
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  scale_ = torch::full({1}, o.enabled ? o.init_scale : 1.0, f32);
  growth_tracker_ = torch::zeros({1}, torch::TensorOptions().dtype(torch::kInt32).device(device));
  found_inf_ = torch::zeros({1}, f32);
}

bool GradScaler::unscale_and_check(const std::vector<torch::Tensor>& grads, double factor) {
  // One sync per window for the scale, beside the one for the count that normalization needs.
  last_scale_ = opts_.enabled ? scale_value() : 1.0;
  const double inv = factor / last_scale_;
  if (inv == 1.0) {
    // Nothing to scale: a read-only pass finds inf/NaN (a norm is finite iff every value is).
    torch::Tensor norms = at::stack(at::_foreach_norm(grads, 2));
    return !at::isfinite(norms).all().item<bool>();
  }
  found_inf_.zero_();
  std::vector<torch::Tensor> fp32;
  for (const auto& g : grads) {
    if (g.scalar_type() == torch::kFloat32) {
      fp32.push_back(g);
    } else {
      // The fused op takes a float32 factor, too coarse for float64 training: multiply in the
      // gradients' own precision instead.
      g.mul_(inv);
      found_inf_.add_(at::isfinite(g).all().logical_not().to(torch::kFloat32));
    }
  }
  if (!fp32.empty())
    at::_amp_foreach_non_finite_check_and_unscale_(fp32, found_inf_, torch::full({}, inv, found_inf_.options()));
  return found_inf_.item<float>() != 0.0f;
}

void GradScaler::update(bool found_inf) {
  if (!opts_.enabled) return;
  found_inf_.fill_(found_inf ? 1.0 : 0.0);
  at::_amp_update_scale_(scale_, growth_tracker_, found_inf_, opts_.growth_factor, opts_.backoff_factor,
                         opts_.growth_interval);
}

std::vector<std::pair<std::string, torch::Tensor>> GradScaler::state() const {
  return {{"scaler.scale", scale_.cpu()}, {"scaler.growth_tracker", growth_tracker_.cpu()}};
}

void GradScaler::load_state(const torch::Tensor& scale, const torch::Tensor& growth_tracker) {
  VDP_CHECK(scale.numel() == 1 && growth_tracker.numel() == 1, "checkpoint scaler state has the wrong shape");
  scale_.copy_(scale.to(torch::kFloat32).view({1}));
  growth_tracker_.copy_(growth_tracker.to(torch::kInt32).view({1}));
}

}  // namespace vdp
