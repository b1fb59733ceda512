#include "vdp/device/readback.h"

#include <c10/core/impl/VirtualGuardImpl.h>

#include "vdp/core/error.h"

namespace vdp {

HostReadback::HostReadback(const torch::Device& device) : device_(device) {
  if (!device_.is_cpu()) done_ = std::make_unique<c10::Event>(device_.type());
}

void HostReadback::start(const torch::Tensor& values) {
  VDP_ASSERT(!pending_, "a device read was started before the previous one was collected");
  pending_ = true;
  if (!done_) {
    host_ = values.to(torch::kCPU);
    return;
  }
  if (!host_.defined() || host_.sizes() != values.sizes() || host_.scalar_type() != values.scalar_type())
    host_ = torch::empty(values.sizes(), values.options().device(torch::kCPU).pinned_memory(true));
  // Pinned destination + non_blocking: an asynchronous copy ordered after the values' producers;
  // the host is not blocked here.
  host_.copy_(values, /*non_blocking=*/true);
  const c10::impl::VirtualGuardImpl impl(device_.type());
  done_->record(impl.getStream(values.device()));
}

torch::Tensor HostReadback::get() {
  VDP_ASSERT(pending_, "no device read was started");
  pending_ = false;
  if (done_) done_->synchronize();
  return host_;
}

}  // namespace vdp
