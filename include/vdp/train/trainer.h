// The trainer: one optimizer step per window of K micro-steps (DESIGN.md §3).
//
//   plan(step) → this rank's K_s slots
//   for k in 0..K_s-1: forward, loss (sum, count), backward(c · sum)   [grads accumulate in the flat
//                                                                        buffer; no communication]
//   one in-place all-reduce of the flat buffer (gradients + loss sum + count)
//   grads ·= 1 / (c · count_global) → clip → optimizer step → schedule   [on the device]
//   metrics of the previous window, read by the host while this one runs (Note [window read one
//   late] in trainer.cpp)
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
#include "vdp/train/task.h"

namespace torch::optim {
class Optimizer;
}

namespace vdp {

class FlatGrads;
class WindowReducer;
class GradScaler;
class LrSchedule;
class WindowMomentum;
class StepLog;
class BufferSync;
class CheckpointDirLock;
class BatchLoader;
class DeviceSkip;
class HostReadback;
class MicroStepGraph;
class TailGraph;

struct StepRecord {
  int64_t epoch = 0;
  int64_t step = 0;        // optimizer steps taken before this one, over all epochs
  int64_t epoch_step = 0;  // index of the step in its epoch
  int64_t samples = 0;     // B_s
  int64_t micro_steps = 0; // K_s
  double items = 0;        // global loss items (samples or tokens)
  double loss = 0;         // global_sum / global_count: the exact mean over the step's items
  double lr = 0;
  double grad_norm = std::numeric_limits<double>::quiet_NaN();  // before clipping; NaN when skipped
                                                               // or not computed (no clipping, metrics or log)
  double scale = 1;        // loss scale used in this window
  bool skipped = false;    // inf/NaN in the reduced gradients: no optimizer step
};

struct EvalResult {
  double loss = std::numeric_limits<double>::quiet_NaN();
  double accuracy = std::numeric_limits<double>::quiet_NaN();  // NaN when the task has no score
  double items = 0;
};

struct TrainResult {
  int64_t steps = 0;
  double last_loss = 0;
  double params_sum = 0;  // sum of all parameters (float64): the "model checksum"
  double params_l2 = 0;   // L2 norm of all parameters
  EvalResult test;        // last evaluation (NaN fields without a test set)
  int64_t allreduce_bytes_per_step = 0;
  double train_seconds = 0;
  double samples_per_second = 0;         // the whole run (its first window includes start-up)
  double steady_samples_per_second = 0;  // after the run's first window (the whole run if it had one)
  int64_t device_peak_bytes = 0;         // CUDA: peak bytes allocated by the caching allocator (0 on the CPU)
  double gpu_busy = std::numeric_limits<double>::quiet_NaN();  // --gpu-busy-steps: device busy / wall time
  int64_t gpu_busy_windows = 0;          // windows it was measured over
  int64_t graph_replays = 0;             // --cuda-graphs: micro-steps replayed (the others ran eagerly)
  int64_t tail_replays = 0;              // --cuda-graphs: window tails replayed
  bool stopped = false;   // a stop signal ended the run early, at a window boundary (train/preemption.h)
  int stop_signal = 0;    // which signal
};

class Trainer {
 public:
  // Checks that every rank was started alike (train/rank_agreement.h), moves the model to
  // comm->device(), makes all ranks' initial state equal to rank 0's (or to cfg.init_weights), lays
  // the gradients out in the flat buffer, locks the checkpoint folder and resumes (rank 0 chooses
  // the checkpoint, every rank loads it). Bad input throws before any file is written.
  Trainer(Config cfg, Task task, std::shared_ptr<Communicator> comm);
  ~Trainer();

  TrainResult fit();
  EvalResult evaluate();

  Net& model() { return *task_.model; }
  const Plan& plan() const { return plan_; }
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
  // result), or at an epoch's end, a checkpoint or the run's end. on_loss: sees and may
  // change each micro-step's (sum, count) before backward (fault injection in tests).
  using SlotObserver = std::function<void(int64_t epoch, int64_t step, int64_t k, const std::vector<int64_t>& ids)>;
  void on_slot(SlotObserver f) { slot_observer_ = std::move(f); }
  using StepObserver = std::function<void(const StepRecord&)>;
  void on_step(StepObserver f) { step_observer_ = std::move(f); }
  // Sees (and may change) each micro-step's loss before backward: fault injection in tests.
  using LossHook = std::function<void(const StepRecord& window, int64_t k, LossSum& loss)>;
  void on_loss(LossHook f) { loss_hook_ = std::move(f); }
  GradScaler& scaler() { return *scaler_; }
  torch::optim::Optimizer& optimizer() { return *optimizer_; }
  const std::vector<torch::Tensor>& parameters() const { return params_; }
  int64_t skipped_steps() const { return skipped_steps_; }

 private:
  void sync_initial_state();
  void setup_checkpoints();  // checkpointing.cpp
  void run_window(int64_t epoch, int64_t epoch_step);
  void finish_window(StepRecord rec);  // the window's tail
  torch::Tensor window_tail();         // its device work; returns the figures for the host
  // The optimizer's kernels run inside window_tail(): always, but with a tail graph only when they
  // read the learning rate from the device (no float64 parameters).
  bool launch_in_tail() const { return !tail_graph_ || lr_.defined(); }
  void settle();                       // reads the last window's figures (Note [window read one late])
  void record_step(const StepRecord& rec);
  double steady_rate() const;
  void stage_window_tail();
  void check_replicas(int64_t epoch);
  std::string nonfinite_message(int64_t step, const double* norms) const;
  std::string choose_resume_path();  // checkpointing.cpp, rank 0
  void resume(const std::string& path);  // checkpointing.cpp

  Config cfg_;
  Task task_;
  std::shared_ptr<Communicator> comm_;
  torch::Device device_;
  Plan plan_;
  int64_t total_steps_ = 0;
  int64_t global_step_ = 0;      // windows done (the data position)
  int64_t optimizer_steps_ = 0;  // optimizer steps taken (the schedule's position)
  int64_t skipped_steps_ = 0;
  int64_t start_global_step_ = 0;
  int64_t last_checkpoint_step_ = -1;
  std::string resumed_from_;
  double hint_ = 1;            // c = 1 / expected_items_
  double expected_items_ = 1;  // m · items per sample
  bool wants_grad_norm_ = true;  // metrics or log lines show it
  bool wants_norms_ = true;      // the window computes gradient norms (shown, clipping, error names)
  bool stop_now_ = false;        // the window's reduction carried a stop vote
  std::vector<torch::Tensor> params_;
  std::vector<std::string> param_names_;
  std::vector<torch::Tensor> param_grads_;  // views into the flat buffer, one per parameter
  std::unique_ptr<FlatGrads> flat_;
  std::unique_ptr<WindowReducer> reducer_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  DeviceSkip* device_skip_ = nullptr;  // optimizer_'s device-side skip (train/fused_optim.h)
  std::unique_ptr<HostReadback> readback_;  // the last window's figures on their way to the host
  std::unique_ptr<MicroStepGraph> graph_;   // --cuda-graphs
  std::unique_ptr<TailGraph> tail_graph_;   // --cuda-graphs
  torch::Tensor lr_;                        // --cuda-graphs: the learning rate on the device
  std::optional<StepRecord> pending_;       // that window's record, completed by settle()
  // fit()'s clock: seconds and samples in windows, and where the steady state starts.
  std::chrono::steady_clock::time_point start_;
  double train_seconds_ = 0, warm_seconds_ = -1;
  int64_t samples_done_ = 0, warm_samples_ = 0;
  double epoch_loss_sum_ = 0, epoch_loss_items_ = 0, last_loss_ = 0;
  std::unique_ptr<BufferSync> buffer_sync_;
  std::unique_ptr<CheckpointDirLock> ckpt_lock_;  // rank 0, with --checkpoint-dir
  std::unique_ptr<BatchLoader> loader_;           // during fit(): this rank's micro-batches, gathered ahead
  std::unique_ptr<StepLog> log_;
  std::unique_ptr<GradScaler> scaler_;
  std::unique_ptr<LrSchedule> schedule_;
  LossHook loss_hook_;
  int sync_layers_ = 0;                              // SyncBatchNorm layers: collectives in forward
  std::unique_ptr<WindowMomentum> window_momentum_;  // per-window BatchNorm momentum, if asked for
  SlotObserver slot_observer_;
  StepObserver step_observer_;
};

// Sum and L2 norm of all parameters, in float64: the model checksum printed as params_sum /
// params_l2.
std::pair<double, double> parameter_checksum(const torch::nn::Module& module);

}  // namespace vdp
