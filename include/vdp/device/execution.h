// How the window's work is executed, chosen once at start: eagerly, or replayed from CUDA graphs
// (`--cuda-graphs`, device/cuda_graph.h). The window's loop (train/window.cpp) calls the runners and
// never asks which mode it is in; where the mode changes the order of work, the runner decides.
//
// MicroStepRunner: one micro-step (forward, loss, backward into the flat buffer). `stage` (may be
// empty) is the window's tail staging (stop vote, loss totals, buffers into the reduction's tail):
// eagerly it runs inside the last micro-step, before backward, so the last bucket may start during
// backward; a graph replays the capture and stages after it (no overlap with graphs).
//
// TailRunner: the window's tail after the reduction, then the optimizer's device half (Note [a
// step in two halves] in optim/fused_optim.h). Eagerly both run as they come; a graph captures the
// tail, and the optimizer's kernels with it when they read the learning rate from the device.
#pragma once

#include <functional>
#include <memory>

#include "vdp/data/dataset.h"

namespace vdp {

class FusedOptimizer;

class MicroStepRunner {
 public:
  // The micro-step on a batch; `before_backward` (may be empty) runs between the loss and backward.
  using Step = std::function<void(const Batch& batch, const std::function<void()>& before_backward)>;
  virtual ~MicroStepRunner() = default;
  virtual void run(const Batch& batch, const std::function<void()>& stage, const Step& step) = 0;
  // Micro-steps replayed (0 eagerly).
  virtual int64_t replays() const = 0;
};

class TailRunner {
 public:
  // The tail's device work; returns the window's figures (a device tensor).
  using Work = std::function<torch::Tensor()>;
  virtual ~TailRunner() = default;
  // Runs `work`, then `opt`'s device half (prepared by the caller); returns work's output.
  virtual torch::Tensor run(FusedOptimizer& opt, const Work& work) = 0;
  // Tails replayed (0 eagerly).
  virtual int64_t replays() const = 0;
};

// `graphs`: CUDA graphs (refused with one line off a GPU or without a CUDA build). `rows`: the steady
// micro-batch's rows, the shape that is captured.
std::unique_ptr<MicroStepRunner> make_micro_step_runner(bool graphs, const torch::Device& device, int64_t rows);
std::unique_ptr<TailRunner> make_tail_runner(bool graphs, const torch::Device& device);

}  // namespace vdp
