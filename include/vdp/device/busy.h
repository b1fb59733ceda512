// The GPU-busy fraction (`--gpu-busy-steps N`): how much of the wall time of the run's last N windows the
// GPU spent running something (kernels, copies, fills), measured with LibTorch's Kineto profiler
// (CUPTI). The device is synchronized before and after the measured windows; busy time is the
// union of the device activities' intervals (overlapping streams count once), wall time the host's
// clock between the two synchronizations. A fraction near 1 means the GPU, not the host, bounds
// the speed. Profiling itself slows the host a little, so run it apart from timed runs.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace vdp {

struct BusyResult {
  double busy_seconds = 0;  // union of the device activities
  double wall_seconds = 0;
  int64_t activities = 0;   // kernels, copies and fills seen
  double fraction() const { return wall_seconds > 0 ? busy_seconds / wall_seconds : 0; }
};

// Length of the union of [start, end) intervals, in their unit.
uint64_t union_length(std::vector<std::pair<uint64_t, uint64_t>> intervals);

class BusyMeter {
 public:
  // On a GPU, attaches the profiler (CUPTI) once at once: made before any CUDA graph is captured, so
  // that the kernels of replayed graphs are seen (CUPTI sees a graph's kernels only when it was
  // attached before the capture: pytorch/kineto#1165). The trainer makes it before its first window.
  explicit BusyMeter(const torch::Device& device);
  ~BusyMeter();
  // Synchronizes the device and starts profiling its activities.
  void start();
  bool running() const { return running_; }
  // Synchronizes the device, stops profiling and measures.
  BusyResult stop();

 private:
  torch::Device device_;
  bool running_ = false;
  double t0_ = 0;
};

}  // namespace vdp
