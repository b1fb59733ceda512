// Autocast for the forward pass (include/vdp/README.md, "Mixed precision"): bf16 or fp16 compute for the ops autocast covers,
// with parameters, gradients and the flat buffer staying in float32.
#pragma once

#include <torch/types.h>

#include "vdp/config/config.h"

namespace vdp {

// Enables autocast for `device`'s type at `precision` for the guard's lifetime (no-op for fp32).
// Nesting-safe; the autocast cast cache is cleared when the outermost guard ends, as
// torch.autocast does.
class AutocastGuard {
 public:
  AutocastGuard(const torch::Device& device, Precision precision);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  c10::DeviceType type_;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_;
};

torch::ScalarType autocast_dtype(Precision p);

}  // namespace vdp
