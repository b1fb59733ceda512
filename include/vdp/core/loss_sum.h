// The (sum, count) pair every loss returns (include/vdp/README.md, "Exact weighting"). Lives in core/ because both the
// gradient buffer (grad/, which carries it in the window's reduction) and the losses (train/) use it.
#pragma once

#include <torch/types.h>

namespace vdp {

struct LossSum {
  torch::Tensor sum;    // 0-d, differentiable: sum of per-item losses
  torch::Tensor count;  // 0-d, same dtype as sum, no grad: number of items (samples or tokens)
};

}  // namespace vdp
