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

torch::Tensor GradScaler::unscale(const std::vector<torch::Tensor>& grads, const torch::Tensor& factor) {
  // Device operations only (Note [window read one late] in train/window.cpp). inv = factor / scale
  // in float64, as the host would compute it, then rounded once for float32 and half gradients.
  const torch::Tensor f64 = factor.to(torch::kDouble);
  const torch::Tensor inv = opts_.enabled ? f64 / scale_.to(torch::kDouble).squeeze() : f64;
  const torch::Tensor inv32 = inv.to(torch::kFloat32);
  found_inf_.zero_();
  std::vector<torch::Tensor> fp32;
  for (const auto& g : grads) {
    if (g.scalar_type() == torch::kFloat32) {
      fp32.push_back(g);
    } else {
      // The fused op takes float32 gradients only; float64 multiplies by the float64 factor (a
      // float32 one would be too coarse), half types by the float32 one.
      g.mul_(g.scalar_type() == torch::kDouble ? inv : inv32);
      found_inf_.add_(at::isfinite(g).all().logical_not().to(torch::kFloat32));
    }
  }
  if (!fp32.empty()) at::_amp_foreach_non_finite_check_and_unscale_(fp32, found_inf_, inv32);
  // The fused optimizers skip a step only for a flag of exactly 1.
  found_inf_.clamp_max_(1.0);
  return found_inf_;
}

void GradScaler::update() {
  if (!opts_.enabled) return;
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
