// A C++ GradScaler with PyTorch's semantics (torch.amp.GradScaler), applied across a window
// (include/vdp/README.md, "Mixed precision"): every micro-step backpropagates the scaled loss; after the window's single
// reduction the gradients are unscaled once, in the same fused pass that applies the count
// normalization and checks for inf/NaN (ATen's _amp_foreach_non_finite_check_and_unscale_); the
// check runs on the reduced gradients, identical on every rank, so every rank takes the same skip
// decision with no extra collective; update() then grows or backs off the scale
// (_amp_update_scale_).
#pragma once

#include <torch/types.h>

#include <vector>

namespace vdp {

struct GradScalerOptions {
  bool enabled = true;
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

class GradScaler {
 public:
  GradScaler(const GradScalerOptions& options, const torch::Device& device);

  bool enabled() const { return opts_.enabled; }
  // The current scale as a 1-element float32 tensor on the device (1 when disabled).
  const torch::Tensor& scale() const { return scale_; }
  double scale_value() const { return scale_.item<double>(); }

  // Multiplies every tensor in `grads` by factor / scale (the scale cancels exactly when it is a
  // power of two) and sets the inf flag if any value is inf or NaN, in one fused pass per float32
  // tensor, all on the device with no host synchronization. `factor` is a 0-d tensor on the device:
  // the count normalization 1 / (c · global count). Disabled: factor alone (the same pass still
  // finds non-finite values). Returns the flag: a [1] float32 tensor on the device, 1 or 0 (what the
  // fused optimizers' found_inf takes).
  torch::Tensor unscale(const std::vector<torch::Tensor>& grads, const torch::Tensor& factor);
  // After a window: back off by backoff_factor if the last unscale() found inf/NaN, else count a
  // good step and grow by growth_factor every growth_interval good steps, on the device. No-op when
  // disabled.
  void update();
  // State for checkpoints: scale and growth tracker.
  std::vector<std::pair<std::string, torch::Tensor>> state() const;
  void load_state(const torch::Tensor& scale, const torch::Tensor& growth_tracker);

 private:
  GradScalerOptions opts_;
  torch::Tensor scale_;           // [1] float32
  torch::Tensor growth_tracker_;  // [1] int32
  torch::Tensor found_inf_;       // [1] float32
};

}  // namespace vdp
