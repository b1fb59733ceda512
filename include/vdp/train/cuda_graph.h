// CUDA graphs for the micro-step (`--cuda-graphs`, DESIGN.md §4, train): forward, loss, the window's
// loss sum and count, and backward into the flat gradient buffer are captured once for the steady
// micro-batch shape and replayed, so a micro-step costs one launch instead of a hundred. Only a
// batch of `rows` rows with the steady batch's shape replays; any other (uneven slots, the short
// last step) runs eagerly, and so do the first `warmup` steady micro-steps (CUDA and cuDNN set-up,
// autotuning), after which the capture is made on a side stream as CUDA requires. A replay reads
// its inputs from static tensors the batch is copied into, and everything else from the tensors
// the capture saw: parameters, the flat buffer, the loss scale, BatchNorm's buffers, the default
// generator (registered by the capture, so dropout draws fresh numbers). The window's reduction and
// tail run between replays, eagerly.
//
// What a capture cannot hold is refused before training with one line (exit 2): a CPU device,
// SyncBatchNorm (collectives inside forward and backward), a BatchNorm momentum that changes per
// window (a host value baked into the kernels); and a model whose forward or backward synchronizes
// with the host, which fails at the capture, named with CUDA's own reason.
#pragma once

#include <functional>
#include <memory>

#include "vdp/data/dataset.h"

namespace vdp {

class MicroStepGraph {
 public:
  using Step = std::function<void(const Batch&)>;
  MicroStepGraph(const torch::Device& device, int64_t rows, int64_t warmup = 3);
  ~MicroStepGraph();
  MicroStepGraph(const MicroStepGraph&) = delete;
  MicroStepGraph& operator=(const MicroStepGraph&) = delete;

  // Runs `step` on `batch`: eagerly (warm-up, another shape) or by replaying its capture. Returns
  // whether it replayed.
  bool run(const Batch& batch, const Step& step);
  int64_t replays() const { return replays_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int64_t rows_, warmup_, seen_ = 0, replays_ = 0;
};

}  // namespace vdp
