// The stream a rank's trainer works on (its device: core/thread_device.h).
//
// Note [one compute stream]: on CUDA every device operation of the trainer (the model moved to the
// device, the initial broadcast, the window's micro-steps and tail, evaluation) is enqueued on one
// stream of vdp's own per device, never on the legacy default stream, from the trainer's first
// operation. Autograd's gradient accumulators remember the stream current when they are created,
// and backward makes that stream wait for the gradients' producers: an accumulator created on the
// legacy default stream and kept alive (the overlapped reducer's hooks hold them for the whole run)
// would pull the legacy stream into a CUDA graph capture, which CUDA refuses ("operation not
// permitted when stream is capturing"). One stream throughout also means that the eager warm-up and
// the capture run on the same stream (cuBLAS workspaces and cuDNN plans set up before the capture),
// and captures need no side stream from PyTorch's pool (whose 32 streams rotate, so that the
// loader's copy stream could come round again). The stream is created once per device and process
// (non-blocking, lowest priority); NCCL keeps its own high-priority stream.
//
// A ComputeStreamScope makes it the calling thread's current stream for the scope's lifetime; at
// entry the compute stream waits for the work enqueued before on the stream that was current, at
// exit that stream waits for the compute stream (events, no host synchronization), so code around
// a scope sees the trainer's work in order. On the CPU a scope only counts (active() is what the
// CPU tests check).
#pragma once

#include <torch/types.h>

#include <memory>

namespace vdp {

class ComputeStreamScope {
 public:
  explicit ComputeStreamScope(const torch::Device& device);
  ~ComputeStreamScope();
  ComputeStreamScope(const ComputeStreamScope&) = delete;
  ComputeStreamScope& operator=(const ComputeStreamScope&) = delete;

  // Whether the calling thread is inside a scope.
  static bool active();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vdp
