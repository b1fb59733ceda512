#include "vdp/device/memory.h"

#include <c10/core/CPUAllocator.h>
#include <c10/core/alignment.h>
#include <c10/core/impl/alloc_cpu.h>
#ifdef VDP_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <limits>
#include <mutex>
#include <string>

namespace vdp {
namespace {

// Counts the bytes of every CPU allocation. Memory comes from c10's own aligned allocation (as the
// default CPU allocator's does); the size is kept in a header of one alignment unit in front of the
// data, so the data pointer is its own context, as raw_allocate users (oneDNN, attention kernels)
// require. Counting is two atomic additions per allocation.
class CountingCpuAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    auto* base = static_cast<char*>(c10::alloc_cpu(n + kHeader));
    *reinterpret_cast<int64_t*>(base) = static_cast<int64_t>(n);
    const int64_t now = live_.fetch_add(static_cast<int64_t>(n)) + static_cast<int64_t>(n);
    int64_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    void* data = base + kHeader;
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }

  static int64_t live() { return live_.load(); }
  static int64_t peak() { return peak_.load(); }
  static void reset_peak() { peak_.store(live_.load()); }

 private:
  static constexpr size_t kHeader = c10::gAlignment;
  static void release(void* data) {
    if (data == nullptr) return;
    char* base = static_cast<char*>(data) - kHeader;
    live_.fetch_sub(*reinterpret_cast<int64_t*>(base));
    c10::free_cpu(base);
  }
  static std::atomic<int64_t> live_, peak_;
};
std::atomic<int64_t> CountingCpuAllocator::live_{0};
std::atomic<int64_t> CountingCpuAllocator::peak_{0};

void count_cpu_allocations() {
  static std::once_flag once;
  std::call_once(once, [] {
    static CountingCpuAllocator counting;
    c10::SetCPUAllocator(&counting, /*priority=*/std::numeric_limits<uint8_t>::max());
  });
}

// A field of /proc/meminfo or a cgroup file, in bytes (-1: absent).
int64_t meminfo_bytes(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string name, unit;
  int64_t kib = 0;
  while (in >> name >> kib) {
    std::getline(in, unit);
    if (name == key + ":") return kib * 1024;
  }
  return -1;
}
int64_t file_bytes(const char* path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text == "max") return -1;
  try {
    return std::stoll(text);
  } catch (const std::exception&) {
    return -1;
  }
}

}  // namespace

void release_cached_memory(const torch::Device& device) {
#ifdef VDP_WITH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#else
  (void)device;
#endif
}

#ifdef VDP_WITH_CUDA
namespace {
constexpr auto kAll = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
}
#endif

int64_t live_memory(const torch::Device& device) {
#ifdef VDP_WITH_CUDA
  if (device.is_cuda())
    return c10::cuda::CUDACachingAllocator::getDeviceStats(device.index()).allocated_bytes[kAll].current;
#endif
  count_cpu_allocations();
  return CountingCpuAllocator::live();
}

int64_t peak_memory(const torch::Device& device) {
#ifdef VDP_WITH_CUDA
  if (device.is_cuda())
    return c10::cuda::CUDACachingAllocator::getDeviceStats(device.index()).allocated_bytes[kAll].peak;
#endif
  count_cpu_allocations();
  return CountingCpuAllocator::peak();
}

void reset_peak_memory(const torch::Device& device) {
#ifdef VDP_WITH_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
    return;
  }
#endif
  count_cpu_allocations();
  CountingCpuAllocator::reset_peak();
}

int64_t available_memory(const torch::Device& device) {
#ifdef VDP_WITH_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDAGuard guard(device.index());
    size_t free = 0, total = 0;
    C10_CUDA_CHECK(cudaMemGetInfo(&free, &total));
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    return static_cast<int64_t>(free) + stats.reserved_bytes[kAll].current - stats.allocated_bytes[kAll].current;
  }
#endif
  int64_t bytes = meminfo_bytes("MemAvailable");
  // A container's memory limit (cgroup v2) caps what this process may use.
  const int64_t limit = file_bytes("/sys/fs/cgroup/memory.max"), used = file_bytes("/sys/fs/cgroup/memory.current");
  if (limit > 0 && used >= 0) bytes = bytes < 0 ? limit - used : std::min(bytes, limit - used);
  return std::max<int64_t>(bytes, 0);
}

}  // namespace vdp
