// Replicated buffers (BatchNorm running statistics) kept identical across ranks.
//
// Note [buffer averaging]: with local BatchNorm (--norm batch) each rank's running statistics see
// only its own micro-batches, so without care they drift apart between ranks: evaluation would
// split the test set over W different models and a checkpoint would keep rank 0's. PyTorch DDP
// broadcasts rank 0's buffers before every forward (one more collective, and W-1 ranks' statistics
// thrown away). vdp instead averages them once per window inside the window's one reduction: the
// buffers are copied into the scalar region of the flat gradient buffer after the last forward, summed with
// the gradients, and divided by W. No extra collective, every rank's data contributes, and after
// each window every rank holds the same values bit for bit (the same sum divided the same way).
// Integer buffers (num_batches_tracked) are averaged and rounded. SyncBatchNorm's statistics are
// global already and are not included.
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

namespace vdp {

class BufferSync {
 public:
  explicit BufferSync(std::vector<torch::Tensor> buffers);
  // Elements the buffers take in the flat buffer's scalar region.
  int64_t numel() const { return numel_; }
  bool empty() const { return buffers_.empty(); }
  // The region of the flat buffer this rank's buffers are summed in (numel() elements).
  void bind(torch::Tensor region);
  // Copies the buffers into the region: after the window's last forward, before its reduction.
  void stage();
  // After the reduction: buffers = region / world.
  void apply(int world);

 private:
  std::vector<torch::Tensor> buffers_;
  torch::Tensor region_;
  int64_t numel_ = 0;
};

}  // namespace vdp
