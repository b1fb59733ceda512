// Reading device values on the host without stalling the device (Note [window read one late] in
// train/window.cpp). start() enqueues a copy of a small device tensor into pinned host memory on
// the current stream and records an event after it; get() waits for that event only, not for the
// work enqueued since, so the device keeps its queue while the host reads. On the CPU both are
// plain copies.
#pragma once

#include <c10/core/Event.h>
#include <torch/types.h>

#include <memory>

namespace vdp {

class HostReadback {
 public:
  explicit HostReadback(const torch::Device& device);
  // Starts reading `values` (any device). A previous read must have been collected by get().
  void start(const torch::Tensor& values);
  // The values of the last start() as a CPU tensor (valid until the next start()).
  torch::Tensor get();

 private:
  torch::Device device_;
  torch::Tensor host_;  // pinned on a GPU
  std::unique_ptr<c10::Event> done_;
  bool pending_ = false;
};

}  // namespace vdp
