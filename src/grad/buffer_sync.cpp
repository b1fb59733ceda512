#include "vdp/grad/buffer_sync.h"

#include <ATen/ATen.h>

#include "vdp/core/error.h"

namespace vdp {

BufferSync::BufferSync(std::vector<torch::Tensor> buffers) : buffers_(std::move(buffers)) {
  for (const auto& b : buffers_) numel_ += b.numel();
}

void BufferSync::bind(torch::Tensor region) {
  VDP_ASSERT(region.numel() == numel_, "buffer region of ", region.numel(), " elements for ", numel_);
  region_ = std::move(region);
}

void BufferSync::stage() {
  if (buffers_.empty()) return;
  torch::NoGradGuard no_grad;
  int64_t off = 0;
  for (const auto& b : buffers_) {
    region_.narrow(0, off, b.numel()).copy_(b.reshape({-1}));
    off += b.numel();
  }
}

void BufferSync::apply(int world) {
  if (buffers_.empty()) return;
  torch::NoGradGuard no_grad;
  int64_t off = 0;
  for (auto& b : buffers_) {
    torch::Tensor avg = region_.narrow(0, off, b.numel()).div(static_cast<double>(world));
    if (!b.is_floating_point()) avg = avg.round();
    b.copy_(avg.view(b.sizes()));
    off += b.numel();
  }
}

}  // namespace vdp
