// One window: this rank's K_s micro-steps into the flat buffer, the window's one reduction, and the
// tail on the device (README.md in include/vdp, "The window"):
//
//   accumulate():  for k in 0..K_s-1, in chunks of at most this rank's chunk size:
//                    forward, loss (sum, count), backward(c · sum · scale)
//                  one reduction of the flat buffer (gradients, loss sum, count, stop votes, buffers)
//   step(lr):      grads ·= E / count_global (and 1 / scale), inf/NaN check, norms, clipping,
//                  optimizer step (skipped on the device on inf/NaN), scale update, and the
//                  updated parameters gathered when the optimizer is sharded (optim/exchange.h)
//   figures():     the window's figures, read on the host one window late (Note [window read one late])
//
// The window owns everything that runs inside it: the flat buffer and its exchange, the replicated
// buffers' averaging, the loss scaler, the optimizer, and how the work is executed (eager or
// replayed, device/execution.h), chosen once here and never asked about again.
#pragma once

#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "vdp/ckpt/safetensors.h"
#include "vdp/config/config.h"
#include "vdp/core/loss_sum.h"
#include "vdp/core/generator_state.h"
#include "vdp/dist/communicator.h"
#include "vdp/report/records.h"
#include "vdp/task/task.h"

namespace c10 {
class OutOfMemoryError;
}

namespace vdp {

class BatchLoader;
class BufferSync;
class FlatGrads;
class FusedOptimizer;
class GradScaler;
class HostReadback;
class MicroStepRunner;
class TailRunner;
class GradExchange;
class WindowMomentum;

// What the host learns of a window, read one window late.
struct WindowFigures {
  double loss_sum = 0;   // over every rank's items
  double count = 0;      // loss items (samples or tokens) over every rank
  bool stop = false;     // some rank voted to stop
  bool skipped = false;  // inf/NaN in the reduced gradients: the optimizer skipped the step
  double scale = 1;      // the loss scale the window used
  double grad_norm = std::numeric_limits<double>::quiet_NaN();  // before clipping, when computed
  std::vector<double> param_norms;                              // per parameter, when computed
};

class Window {
 public:
  using SlotObserver = std::function<void(int64_t epoch, int64_t step, int64_t k, const std::vector<int64_t>& ids)>;
  using LossHook = std::function<void(const StepRecord& window, int64_t k, const Batch& batch, LossSum& loss)>;
  // `stop_vote`: polled once per window when its tail is staged; nonzero asks every rank to stop.
  Window(const Config& cfg, Task& task, std::shared_ptr<Communicator> comm, std::function<bool()> stop_vote);
  ~Window();
  Window(const Window&) = delete;
  Window& operator=(const Window&) = delete;

  // This rank's micro-steps of the window `rec` describes, then the window's one reduction.
  void accumulate(const StepRecord& rec, BatchLoader& loader);
  // The tail on the device at learning rate `lr`; its figures start their way to the host.
  void step(double lr);
  // The figures of the last step() (waits for them, not for work enqueued since).
  WindowFigures figures();
  // The last step() was skipped on the device: its host bookkeeping is taken back.
  void step_was_skipped();

  void on_slot(SlotObserver f) { slot_observer_ = std::move(f); }
  void on_loss(LossHook f);
  // Told when this rank recovered from an out-of-memory error by halving its chunk size (Note
  // [out-of-memory redo] in window.cpp): the step, the old and new size, the allocator's reason.
  using MemoryObserver = std::function<void(int64_t step, int64_t from, int64_t to, const std::string& why)>;
  void on_out_of_memory(MemoryObserver f) { memory_observer_ = std::move(f); }
  // This rank's most samples per forward/backward now (--chunk, or m; smaller after a recovery).
  int64_t chunk() const { return chunk_; }
  // Whether figures() holds gradient norms (shown, clipping, naming a non-finite parameter).
  bool has_norms() const { return wants_norms_; }
  // Whether the model communicates inside forward and backward (SyncBatchNorm): empty slots run too.
  bool collectives_in_forward() const { return sync_layers_ > 0; }

  const std::vector<torch::Tensor>& parameters() const { return params_; }
  const std::vector<std::string>& parameter_names() const { return param_names_; }
  GradScaler& scaler() { return *scaler_; }
  FusedOptimizer& optimizer() { return *optimizer_; }
  const FlatGrads& flat() const { return *flat_; }
  // The optimizer's state in the one checkpoint format, whole on rank 0; every rank must call it.
  NamedTensors optimizer_state();
  void load_optimizer_state(const NamedTensors& state, const std::string& source);
  int64_t reduction_bytes() const;
  int64_t wire_bytes() const;  // per rank and window (optim/exchange.h)
  int64_t micro_step_replays() const;
  int64_t tail_replays() const;

 private:
  void begin();          // a clean buffer; the generators' state kept for a redo
  void run_slot(const StepRecord& rec, int64_t k, const Batch& batch);
  void redo(const StepRecord& rec, const std::vector<std::vector<int64_t>>& slots, const c10::OutOfMemoryError& first);
  torch::Tensor tail();  // the tail's device work; returns the figures, packed
  void stage();          // the stop vote, loss totals and buffers into the flat buffer's scalar region
  void micro_step(const StepRecord& rec, int64_t k, const Batch& batch, const std::function<void()>& before_backward);

  const Config& cfg_;
  Task& task_;
  std::shared_ptr<Communicator> comm_;
  torch::Device device_;
  std::function<bool()> stop_vote_;
  int sync_layers_ = 0;          // SyncBatchNorm layers: collectives in forward
  double expected_items_ = 1;    // E = m · items per sample; the magnitude hint c = 1 / E
  int64_t chunk_ = 1;            // this rank's most samples per forward/backward
  bool has_batch_norm_ = false;  // BatchNorm layers: their statistics see a chunk, so no chunking
  GeneratorState rng_;           // at the window's start, for a redo
  bool wants_norms_ = true;
  std::vector<torch::Tensor> params_;
  std::vector<std::string> param_names_;
  std::unique_ptr<BufferSync> buffer_sync_;
  std::unique_ptr<FlatGrads> flat_;
  std::unique_ptr<GradExchange> exchange_;  // replicated or sharded, chosen once (optim/exchange.h)
  std::unique_ptr<GradScaler> scaler_;
  std::unique_ptr<FusedOptimizer> optimizer_;
  std::unique_ptr<WindowMomentum> window_momentum_;  // per-window BatchNorm momentum, if asked for
  std::unique_ptr<MicroStepRunner> micro_steps_;
  std::unique_ptr<TailRunner> tails_;
  std::unique_ptr<HostReadback> readback_;
  torch::Tensor lr_;  // the learning rate on the device, when a replayed tail reads it there
  SlotObserver slot_observer_;
  LossHook loss_hook_;
  MemoryObserver memory_observer_;
};

}  // namespace vdp
