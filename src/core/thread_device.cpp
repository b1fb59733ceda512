#include "vdp/core/thread_device.h"

#ifdef VDP_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace vdp {
namespace {
thread_local std::optional<torch::Device> t_bound;
}  // namespace

void bind_device(const torch::Device& device) {
#ifdef VDP_WITH_CUDA
  if (device.is_cuda()) c10::cuda::set_device(device.has_index() ? device.index() : 0);
#endif
  t_bound = device;
}

std::optional<torch::Device> bound_device() { return t_bound; }

}  // namespace vdp
