#include "vdp/device/compute_stream.h"

#ifdef VDP_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <map>
#include <mutex>

#include "vdp/core/error.h"

namespace vdp {
namespace {

thread_local int t_scopes = 0;

#ifdef VDP_WITH_CUDA
// Note [one compute stream]: vdp's own stream for `index`, created on first use and kept for the
// process's lifetime (as PyTorch's pool streams are).
c10::cuda::CUDAStream compute_stream(c10::DeviceIndex index) {
  static std::mutex mu;
  static std::map<c10::DeviceIndex, cudaStream_t> streams;
  std::lock_guard<std::mutex> lock(mu);
  cudaStream_t& s = streams[index];
  if (s == nullptr) {
    c10::cuda::CUDAGuard guard(index);
    int least = 0, greatest = 0;
    C10_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    C10_CUDA_CHECK(cudaStreamCreateWithPriority(&s, cudaStreamNonBlocking, least));
  }
  return c10::cuda::getStreamFromExternal(s, index);
}
#endif

}  // namespace

#ifdef VDP_WITH_CUDA
struct ComputeStreamScope::Impl {
  std::optional<c10::cuda::CUDAStream> before;  // the stream current at entry, when it was another
  std::optional<c10::cuda::CUDAStream> compute;
};
#else
struct ComputeStreamScope::Impl {};
#endif

ComputeStreamScope::ComputeStreamScope(const torch::Device& device) : impl_(std::make_unique<Impl>()) {
#ifdef VDP_WITH_CUDA
  if (device.is_cuda()) {
    const c10::DeviceIndex index = device.has_index() ? device.index() : c10::cuda::current_device();
    const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream(index);
    const c10::cuda::CUDAStream compute = compute_stream(index);
    if (current != compute) {
      at::cuda::CUDAEvent before;
      before.record(current);
      before.block(compute);
      c10::cuda::setCurrentCUDAStream(compute);
      impl_->before = current;
      impl_->compute = compute;
    }
  }
#else
  (void)device;
#endif
  ++t_scopes;
}

ComputeStreamScope::~ComputeStreamScope() {
  --t_scopes;
#ifdef VDP_WITH_CUDA
  if (impl_->before) {
    at::cuda::CUDAEvent after;
    after.record(*impl_->compute);
    after.block(*impl_->before);
    c10::cuda::setCurrentCUDAStream(*impl_->before);
  }
#endif
}

bool ComputeStreamScope::active() { return t_scopes > 0; }

}  // namespace vdp
