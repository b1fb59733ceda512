// What the window needs to recover from an out-of-memory error exactly: the random generators'
// state to replay a window (dropout draws the same numbers again), and the device's cached blocks
// released before the retry.
#pragma once

#include <torch/types.h>

namespace vdp {

// The default CPU generator's state and, on a GPU, that device's generator state.
class GeneratorState {
 public:
  explicit GeneratorState(const torch::Device& device);
  void capture();
  void restore() const;

 private:
  torch::Device device_;
  torch::Tensor cpu_, cuda_;
};

// CUDA: frees the caching allocator's unused blocks (emptyCache), so a retry in smaller pieces finds
// the memory; nothing to do on the CPU.
void release_cached_memory(const torch::Device& device);

}  // namespace vdp
