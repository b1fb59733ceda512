// The trainer: one optimizer step per window of K micro-steps (include/vdp/README.md, "The window").
//
//   plan(step) → this rank's K_s slots
//   for k in 0..K_s-1: forward, loss (sum, count), backward(c · sum)   [grads accumulate in the flat
//                                                                        buffer; no communication]
//   one in-place all-reduce of the flat buffer (gradients + loss sum + count)
//   grads ·= 1 / (c · count_global) → clip → optimizer step → schedule   [on the device]
//   metrics of the previous window, read by the host while this one runs (Note [window read one
//   late] in train/window.cpp)
//
// Every rank runs the same K_s micro-steps and issues the same collectives in the same order. The
// normalization uses the real global item count, so the result equals training on the whole global
// batch at once, for any (W, K, m), short micro-batches, short windows and empty slots.
#pragma once

#include <chrono>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <vector>

#include "vdp/config/config.h"
#include "vdp/dist/communicator.h"
#include "vdp/plan/plan.h"
#include "vdp/report/records.h"
#include "vdp/task/task.h"
#include "vdp/train/micro_batch_search.h"
#include "vdp/train/window.h"

namespace torch::optim {
class Optimizer;
}

namespace vdp {

class BatchLoader;
class CheckpointDirLock;
class GradScaler;
class LrSchedule;
class StepLog;

class Trainer {
 public:
  // Checks that every rank was started alike (train/rank_agreement.h), moves the model to
  // comm->device(), makes all ranks' initial state equal to rank 0's (or to cfg.init_weights), lays
  // the gradients out in the flat buffer (train/window.h), locks the checkpoint folder and resumes
  // (rank 0 chooses the checkpoint, every rank loads it). Bad input throws before any file is written.
  Trainer(Config cfg, Task task, std::shared_ptr<Communicator> comm);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  TrainResult fit();
  EvalResult evaluate();

  Net& model() { return *task_.model; }
  const Plan& plan() const { return plan_; }
  // --micro-batch auto: what the search chose, or what the checkpoint held (micro_batch 0 otherwise).
  const MicroBatchChoice& micro_batch_choice() const { return micro_batch_choice_; }
  int64_t total_steps() const { return total_steps_; }
  // The checkpoint this trainer resumed from ("" for a fresh start), and the step it resumes at.
  const std::string& resumed_from() const { return resumed_from_; }
  int64_t start_step() const { return start_global_step_; }
  // Writes a checkpoint of the current state (rank 0 writes; other ranks return at once).
  void save_checkpoint_now();
  // Parameters and replicated buffers (BatchNorm statistics): what every rank must hold alike.
  std::vector<torch::Tensor> state_tensors() const;

  // Observers, called on every rank in the same order. on_slot: before each micro-step's forward,
  // with the sample ids of this rank's slot (epoch, step within the epoch, micro-step k; an empty
  // slot calls it with no ids), i.e. which samples went where. on_step: once per optimizer step (or
  // skipped step), with the global, exact figures of the step (StepRecord), one window late: after
  // the next window's micro-steps and before its optimizer step (the model then holds this step's
  // result), or at an epoch's end, a checkpoint or the run's end. on_loss: sees each forward's batch
  // (a chunk of the slot) and may change its (sum, count) before backward (fault injection in tests);
  // refused with --cuda-graphs, whose replays run no host code (a hook would run once, at the capture).
  using SlotObserver = Window::SlotObserver;
  void on_slot(SlotObserver f);
  using StepObserver = std::function<void(const StepRecord&)>;
  void on_step(StepObserver f) { step_observer_ = std::move(f); }
  using LossHook = Window::LossHook;
  void on_loss(LossHook f);
  // Where stop requests come from: polled once per window, a nonzero value (a signal number) asks
  // every rank to stop at the next window boundary (run/preemption.h gives vdp-train's). None: the
  // run is never stopped early.
  using StopSource = std::function<int()>;
  void stop_on(StopSource f) { stop_source_ = std::move(f); }

  // Told after this rank recovered from an out-of-memory error (train/window.h), besides the line
  // and the metrics event; chunk() is this rank's chunk size now.
  void on_out_of_memory(Window::MemoryObserver f) { memory_observer_ = std::move(f); }
  int64_t chunk() const { return window_->chunk(); }

  GradScaler& scaler();
  torch::optim::Optimizer& optimizer();
  const std::vector<torch::Tensor>& parameters() const;
  int64_t skipped_steps() const { return skipped_steps_; }

 private:
  void sync_initial_state();
  void choose_micro_batch();              // micro_batch_search.cpp: --micro-batch auto
  void report_micro_batch();              // micro_batch_search.cpp
  void setup_checkpoints();               // checkpointing.cpp
  std::string choose_resume_path();       // checkpointing.cpp, rank 0
  void resume(const std::string& path);   // checkpointing.cpp
  std::string optimizer_state_kind() const;  // checkpointing.cpp: what the optimizer keeps per parameter
  void run_window(int64_t epoch, int64_t epoch_step);
  void settle();  // the last window's figures, read one window late (Note [window read one late])
  void record_step(const StepRecord& rec);
  double steady_rate() const;
  void check_replicas(int64_t epoch);
  void run_epochs(TrainResult& result);
  void finish_run(TrainResult& result);
  std::string nonfinite_message(int64_t step, const WindowFigures& f) const;

  Config cfg_;
  Task task_;
  std::shared_ptr<Communicator> comm_;
  torch::Device device_;
  Plan plan_;
  MicroBatchChoice micro_batch_choice_;  // --micro-batch auto: what the search chose (or the checkpoint held)
  int64_t total_steps_ = 0;
  int64_t global_step_ = 0;      // windows done (the data position)
  int64_t optimizer_steps_ = 0;  // optimizer steps taken (the schedule's position)
  int64_t skipped_steps_ = 0;
  int64_t start_global_step_ = 0;
  int64_t last_checkpoint_step_ = -1;
  std::string resumed_from_;
  bool stop_now_ = false;  // a window's reduction carried a stop vote
  int stop_signal_ = 0;    // this rank's stop request, if any
  StopSource stop_source_;
  std::unique_ptr<Window> window_;
  std::optional<StepRecord> pending_;  // the last window's record, completed by settle()
  // fit()'s clock: seconds and samples in windows, and where the steady state starts.
  std::chrono::steady_clock::time_point start_;
  double train_seconds_ = 0, warm_seconds_ = -1;
  int64_t samples_done_ = 0, warm_samples_ = 0;
  double epoch_loss_sum_ = 0, epoch_loss_items_ = 0, last_loss_ = 0;
  std::unique_ptr<CheckpointDirLock> ckpt_lock_;  // rank 0, with --checkpoint-dir
  std::unique_ptr<BatchLoader> loader_;           // during fit(): this rank's micro-batches, gathered ahead
  std::unique_ptr<StepLog> log_;
  std::unique_ptr<LrSchedule> schedule_;
  StepObserver step_observer_;
  Window::MemoryObserver memory_observer_;
};

// Sum and L2 norm of all parameters, in float64: the model checksum printed as params_sum /
// params_l2.
std::pair<double, double> parameter_checksum(const torch::nn::Module& module);

}  // namespace vdp
