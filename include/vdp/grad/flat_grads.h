// The flat gradient buffer (include/vdp/README.md, "The window"): one allocation per (device, dtype) group, every
// parameter's .grad a view into it, so zeroing is one fill and the all-reduce is in place with no
// copies. The scalar region at the end of the first group carries what else the window must agree on, reduced by the
// very same collective as the gradients: the window's loss sum and item count (include/vdp/README.md, "Exact weighting"), the
// stop vote (run/preemption.h), and `extra` elements for replicated buffers (grad/buffer_sync.h).
//
// Note [grad views survive backward]: autograd's AccumulateGrad adds into an existing .grad in place
// when grad mode is off during backward (the first-order case), so the views stay views. Anything
// that assigns a new tensor to .grad (optimizer.zero_grad(set_to_none=true), a user's code) breaks
// the aliasing; check_views() detects that and names the parameter.
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "vdp/core/loss_sum.h"

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
  // `multiple`: each buffer's gradient region is padded with zeros to a multiple of it (the scalar
  // region comes after the padding), so that a reduce-scatter splits it into equal shards.
  FlatGrads(const std::vector<torch::Tensor>& params, const std::vector<std::string>& names, int64_t extra = 0,
            int64_t multiple = 1);
  ~FlatGrads();
  FlatGrads(const FlatGrads&) = delete;
  FlatGrads& operator=(const FlatGrads&) = delete;

  // Sets every gradient and the scalar region to zero: one fill per group.
  void zero();
  // Starts a window: every gradient and the local loss totals are zeroed (zero()); the window's
  // backwards then add into the views.
  void begin_window() { zero(); }
  // Adds a micro-step's (sum, count) to the window's local float64 totals. No host synchronization.
  void add_loss(const LossSum& loss);
  // Writes the local totals into the scalar region, split so that the reduction sums them exactly (Note
  // [exact window totals] in the source): after the window's last add_loss, before its reduction.
  void stage_loss();
  // The reduced totals on the device, with no host synchronization: [loss sum, count, stop votes],
  // float64 (after the reduction).
  torch::Tensor totals_tensor() const;
  // This rank's stop vote for the window (1: stop after it). After the reduction the slot holds
  // the number of ranks that voted.
  void set_stop(bool stop);

  // Whole buffers including the scalar region: what the reduction sends. For a float16/bfloat16 first group
  // the scalar region is a float32 buffer of its own, the last one.
  const std::vector<torch::Tensor>& buffers() const { return buffers_; }
  // The gradient part of each buffer (scalar region excluded), for normalization, norms and clipping.
  const std::vector<torch::Tensor>& grads() const { return grads_; }
  // The gradient part of each buffer with its padding (a multiple of the constructor's `multiple`).
  const std::vector<torch::Tensor>& padded_grads() const { return padded_; }
  // The scalars and the extra elements after them: what must be summed on every rank.
  const torch::Tensor& scalar_region() const { return region_; }
  // The scalars [loss sum hi, lo, count hi, lo, stop votes], as one [5] view.
  const torch::Tensor& scalars() const { return scalars_; }
  // The `extra` elements after the scalars (empty if none).
  const torch::Tensor& extra() const { return extra_; }
  const GradSlot& slot(size_t param) const { return slots_[param]; }
  // Throws InternalError naming the first parameter whose .grad no longer aliases the buffer.
  void check_views() const;

 private:
  std::vector<torch::Tensor> params_;
  std::vector<std::string> names_;
  std::vector<GradSlot> slots_;         // [parameter]
  std::vector<torch::Tensor> views_;    // [parameter] its gradient's view of a buffer
  std::vector<torch::Tensor> buffers_;  // [group]
  std::vector<torch::Tensor> grads_;    // [group] views of buffers_ without the scalar region
  std::vector<torch::Tensor> padded_;   // [group] the same with their padding
  torch::Tensor region_;                // scalars and extra
  torch::Tensor scalars_;                  // [5] view near the end of its buffer
  torch::Tensor extra_;                 // [extra] view at the very end of it
  torch::Tensor stop_;                  // 0-d view of scalars_
  torch::Tensor acc_sum_, acc_count_;   // 0-d float64: this window's local totals
};

}  // namespace vdp
