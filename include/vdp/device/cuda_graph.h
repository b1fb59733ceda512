// CUDA graphs (`--cuda-graphs`, include/vdp/README.md, "The GPU path"): the micro-step and the window's tail are
// captured once they are steady and replayed, so each costs one launch instead of tens to hundreds.
// Captures are made on the trainer's compute stream (Note [one compute stream] in
// device/compute_stream.h: not the legacy default stream, which CUDA cannot capture; the stream the
// eager warm-up ran on and the gradient accumulators were made on), in cudaStreamCaptureModeThreadLocal
// (the data producer's thread may pin memory and copy meanwhile), after eager warm-up. A failed
// capture leaves nothing behind (Note [a failed capture] in device/capture.h).
//
// MicroStepGraph: forward, loss, the window's loss sum and count, and backward into the flat
// gradient buffer, for the steady micro-batch shape. Only a batch of `rows` rows with the steady
// batch's shape replays; any other (uneven slots, the short last step) runs eagerly, and so do the
// first `warmup` steady micro-steps (CUDA and cuDNN set-up, autotuning). A replay reads its inputs
// from static tensors the batch is copied into, and everything else from the tensors the capture
// saw: parameters, the flat buffer, the loss scale, BatchNorm's buffers, the default generator
// (registered by the capture, so dropout draws fresh numbers). The window's reduction runs between
// replays, eagerly.
//
// TailGraph: the window's tail after the reduction (Note [window read one late] in
// train/window.cpp): normalization and unscaling, the gradient norms and clipping, the figures
// for the host, the optimizer's kernels (Note [a step in two halves] in optim/fused_optim.h) and the
// scaler's update. Its work reads only tensors that outlive it, and host values that do not change
// from window to window; what does change (which tensors the optimizer's kernels update, whether
// a momentum buffer starts) is its `key`, and a capture is made after the same key was seen
// `warmup` windows in a row. When the key changes the capture is retired: kept until an event after
// its last replay has passed (the host never waits), then freed. The optimizers keep their state
// tensors across skipped steps (optim/fused_optim.h), so the key holds while a scaler backs off.
//
// What a capture cannot hold is refused before training with one line (exit 2): a CPU device,
// SyncBatchNorm (collectives inside forward and backward), a BatchNorm momentum that changes per
// window (a host value baked into the kernels); and a model whose forward or backward synchronizes
// with the host, which fails at the capture, named with CUDA's own reason.
#pragma once

#include <functional>
#include <memory>
#include <vector>

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

class TailGraph {
 public:
  using Work = std::function<torch::Tensor()>;  // enqueues the tail; returns its output
  TailGraph(const torch::Device& device, int64_t warmup = 2);
  ~TailGraph();
  TailGraph(const TailGraph&) = delete;
  TailGraph& operator=(const TailGraph&) = delete;

  // Runs `work` eagerly, or replays its capture for this `key`. The output of a replay is the
  // capture's own tensor, overwritten by the next replay.
  torch::Tensor run(const std::vector<const void*>& key, const Work& work);
  int64_t replays() const { return replays_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<const void*> key_;
  int64_t warmup_, seen_ = 0, replays_ = 0;
};

}  // namespace vdp
