#include "vdp/amp/autocast.h"

#include <ATen/autocast_mode.h>

namespace vdp {

torch::ScalarType autocast_dtype(Precision p) {
  return p == Precision::Fp16 ? torch::kFloat16 : p == Precision::Bf16 ? torch::kBFloat16 : torch::kFloat32;
}

AutocastGuard::AutocastGuard(const torch::Device& device, Precision precision) : type_(device.type()) {
  if (precision == Precision::Fp32) return;
  active_ = true;
  prev_enabled_ = at::autocast::is_autocast_enabled(type_);
  prev_dtype_ = at::autocast::get_autocast_dtype(type_);
  at::autocast::set_autocast_enabled(type_, true);
  at::autocast::set_autocast_dtype(type_, autocast_dtype(precision));
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(type_, prev_enabled_);
  at::autocast::set_autocast_dtype(type_, prev_dtype_);
}

}  // namespace vdp
