// The random generators' state: the default CPU generator and, on a GPU, that device's generator.
// Captured and restored where a computation must draw the same numbers again: a window redone after
// an out-of-memory error, a block recomputed in backward (nn/recompute.h), a checkpoint.
#pragma once

#include <torch/types.h>

namespace vdp {

class GeneratorState {
 public:
  explicit GeneratorState(const torch::Device& device);
  void capture();
  void restore() const;
  // The captured states (CUDA: undefined on the CPU), and setting them from a checkpoint.
  const torch::Tensor& cpu() const { return cpu_; }
  const torch::Tensor& cuda() const { return cuda_; }
  void set(torch::Tensor cpu, torch::Tensor cuda);

 private:
  torch::Device device_;
  torch::Tensor cpu_, cuda_;
};

}  // namespace vdp
