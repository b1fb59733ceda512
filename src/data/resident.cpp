#include "vdp/data/resident.h"

#ifdef VDP_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

#include <algorithm>
#include <numeric>

#include "vdp/core/error.h"

namespace vdp {
namespace {

int64_t bytes_of(const torch::Tensor& t) {
  return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0;
}

// Bytes free on the device (its own total on the CPU: no limit there beyond the host's).
int64_t free_bytes(const torch::Device& device) {
#ifdef VDP_WITH_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDAGuard guard(device);
    size_t free = 0, total = 0;
    VDP_ASSERT(cudaMemGetInfo(&free, &total) == cudaSuccess, "cudaMemGetInfo failed");
    // Memory the caching allocator holds but does not use is free for the samples too.
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    const auto agg = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    return static_cast<int64_t>(free) + stats.reserved_bytes[agg].current - stats.allocated_bytes[agg].current;
  }
#endif
  (void)device;
  return std::numeric_limits<int64_t>::max();
}

torch::Tensor empty_like_rows(const torch::Tensor& t, int64_t n, const torch::Device& device) {
  if (!t.defined()) return t;
  std::vector<int64_t> shape = t.sizes().vec();
  shape[0] = n;
  return torch::empty(shape, t.options().device(device));
}

}  // namespace

ResidentDataset::ResidentDataset(const std::shared_ptr<const Dataset>& data, const torch::Device& device)
    : device_(device), n_(data->size()) {
  VDP_CHECK(n_ > 0, "--data-on-device: the training set is empty");
  const Batch one = data->get({0});
  bytes_ = (bytes_of(one.x) + bytes_of(one.y) + bytes_of(one.mask)) * n_;
  const int64_t avail = free_bytes(device_);
  VDP_CHECK(bytes_ <= avail / 2, "--data-on-device: the training set needs ", bytes_ / (1 << 20), " MiB on ",
            device_, " but only ", avail / (1 << 20),
            " MiB are free (it may take half); leave out --data-on-device to stream it from the host");
  all_ = {empty_like_rows(one.x, n_, device_), empty_like_rows(one.y, n_, device_),
          empty_like_rows(one.mask, n_, device_)};
  // In chunks of about 64 MiB, so the host never holds a second copy of the whole set.
  const int64_t per_sample = std::max<int64_t>(1, bytes_ / n_);
  const int64_t chunk = std::max<int64_t>(1, (int64_t{64} << 20) / per_sample);
  std::vector<int64_t> ids;
  for (int64_t start = 0; start < n_; start += chunk) {
    ids.resize(std::min(chunk, n_ - start));
    std::iota(ids.begin(), ids.end(), start);
    const Batch b = data->get(ids);
    auto put = [&](torch::Tensor& dst, const torch::Tensor& src, const char* what) {
      if (!dst.defined()) return;
      VDP_CHECK(src.defined() && src.sizes().slice(1) == dst.sizes().slice(1),
                "--data-on-device: the samples' ", what, " do not all have one shape (sample 0: ",
                dst.sizes().slice(1), ", samples from ", start, ": ",
                src.defined() ? src.sizes().slice(1) : c10::IntArrayRef{}, "); leave out --data-on-device");
      dst.narrow(0, start, src.size(0)).copy_(src);
    };
    put(all_.x, b.x, "inputs");
    put(all_.y, b.y, "targets");
    put(all_.mask, b.mask, "masks");
  }
}

Batch ResidentDataset::get(const std::vector<int64_t>& indices) const {
  for (int64_t i : indices) VDP_ASSERT(i >= 0 && i < n_, "sample index ", i, " out of range");
  torch::Tensor idx = torch::from_blob(const_cast<int64_t*>(indices.data()), {static_cast<int64_t>(indices.size())},
                                       torch::kInt64);
  // From pinned memory the copy is asynchronous (pageable memory would make the host wait).
  if (device_.is_cuda()) idx = idx.pin_memory().to(device_, /*non_blocking=*/true);
  Batch b;
  b.x = all_.x.index_select(0, idx);
  b.y = all_.y.index_select(0, idx);
  if (all_.mask.defined()) b.mask = all_.mask.index_select(0, idx);
  return b;
}

}  // namespace vdp
