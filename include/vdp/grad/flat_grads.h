// The flat gradient buffer (STYLE.md habit 2): one allocation per (device, dtype) group, every
// parameter's .grad a view into it, so zeroing is one fill and the all-reduce is in place with no
// copies. Two scalars ride at the tail of the first group: the window's loss sum and item count
// (DESIGN.md §2), so they are reduced by the very same collective as the gradients.
//
// Note [grad views survive backward]: autograd's AccumulateGrad adds into an existing .grad in place
// when grad mode is off during backward (the first-order case), so the views stay views. Anything
// that assigns a new tensor to .grad (optimizer.zero_grad(set_to_none=true), a user's code) breaks
// the aliasing; check_views() detects that and names the parameter.
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

#include "vdp/train/loss.h"

namespace vdp {

// Where one parameter's gradient lives: group (buffer) index and element range.
struct GradSlot {
  size_t group = 0;
  int64_t offset = 0;
  int64_t numel = 0;
};

class FlatGrads {
 public:
  // `params`: the trainable parameters (requires_grad), in module order. Grouped by (device, dtype);
  // group order follows the first appearance of each kind. Within a buffer parameters are laid out
  // in reverse module order, the order backward produces their gradients in, so that contiguous
  // buckets fill front to back (Note [bucket order] in reducer.h). Existing .grad values are
  // discarded.
  FlatGrads(const std::vector<torch::Tensor>& params, const std::vector<std::string>& names);

  // Sets every gradient and both scalars to zero: one fill per group.
  void zero();
  // Adds a micro-step's (sum, count) into the tail scalars. No host synchronization.
  void add_loss(const LossSum& loss);

  // Whole buffers including the tail scalars: what the reduction sends.
  const std::vector<torch::Tensor>& buffers() const { return buffers_; }
  // The gradient part of each buffer (tail excluded), for normalization, norms and clipping.
  const std::vector<torch::Tensor>& grads() const { return grads_; }
  // The two tail scalars, [loss sum, item count], as one [2] view.
  const torch::Tensor& tail() const { return tail_; }
  const GradSlot& slot(size_t param) const { return slots_[param]; }
  // Throws InternalError naming the first parameter whose .grad no longer aliases the buffer.
  void check_views() const;

 private:
  std::vector<torch::Tensor> params_;
  std::vector<std::string> names_;
  std::vector<GradSlot> slots_;         // [parameter]
  std::vector<torch::Tensor> buffers_;  // [group]
  std::vector<torch::Tensor> grads_;    // [group] views of buffers_ without the tail
  torch::Tensor tail_;                  // [2] view at the end of buffers_[0]
  torch::Tensor loss_sum_, count_;      // 0-d views of tail_, made once (add_loss runs every micro-step)
};

}  // namespace vdp
