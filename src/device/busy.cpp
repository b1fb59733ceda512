#include "vdp/device/busy.h"

#include <c10/core/impl/VirtualGuardImpl.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "vdp/core/error.h"

namespace vdp {
namespace {

namespace kp = torch::autograd::profiler;
namespace pi = torch::profiler::impl;

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void synchronize(const torch::Device& device) {
  c10::impl::VirtualGuardImpl impl(device.type());
  impl.synchronizeDevice(device.index());
}

const std::set<pi::ActivityType> kActivities = {pi::ActivityType::CUDA};

}  // namespace

uint64_t union_length(std::vector<std::pair<uint64_t, uint64_t>> iv) {
  std::sort(iv.begin(), iv.end());
  uint64_t total = 0, start = 0, end = 0;
  bool open = false;
  for (const auto& [a, b] : iv) {
    if (b <= a) continue;
    if (open && a <= end) {
      end = std::max(end, b);
      continue;
    }
    if (open) total += end - start;
    start = a, end = b, open = true;
  }
  if (open) total += end - start;
  return total;
}

BusyMeter::BusyMeter(const torch::Device& device) : device_(device) {
  if (!device_.is_cuda()) return;
  const pi::ProfilerConfig config(pi::ProfilerState::KINETO);
  kp::prepareProfiler(config, kActivities);
  kp::enableProfiler(config, kActivities);
  (void)kp::disableProfiler();
}

BusyMeter::~BusyMeter() {
  if (running_) (void)kp::disableProfiler();
}

void BusyMeter::start() {
  VDP_CHECK(device_.is_cuda(), "--gpu-busy-steps measures a GPU: it needs --device cuda");
  VDP_ASSERT(!running_, "the busy meter is running already");
  const pi::ProfilerConfig config(pi::ProfilerState::KINETO);
  kp::prepareProfiler(config, kActivities);
  synchronize(device_);
  kp::enableProfiler(config, kActivities);
  running_ = true;
  t0_ = now_seconds();
}

BusyResult BusyMeter::stop() {
  VDP_ASSERT(running_, "the busy meter is not running");
  synchronize(device_);
  BusyResult r;
  r.wall_seconds = now_seconds() - t0_;
  running_ = false;
  const std::unique_ptr<kp::ProfilerResult> result = kp::disableProfiler();
  std::vector<std::pair<uint64_t, uint64_t>> iv;
  for (const auto& e : result->events()) {
    if (e.deviceType() != c10::DeviceType::CUDA) continue;  // runtime calls are host-side
    iv.emplace_back(e.startNs(), e.startNs() + e.durationNs());
  }
  r.activities = static_cast<int64_t>(iv.size());
  r.busy_seconds = static_cast<double>(union_length(std::move(iv))) * 1e-9;
  return r;
}

}  // namespace vdp
