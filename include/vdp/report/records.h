// What a run reports: one optimizer step's exact global figures (StepRecord), an evaluation
// (EvalResult) and the run's outcome (TrainResult). Plain values, shared by the trainer that makes
// them and the step log that writes them.
#pragma once

#include <cstdint>
#include <limits>

namespace vdp {

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
  int64_t wire_bytes_per_step = 0;       // bytes one rank sends per window in a ring (optim/exchange.h)
  int64_t optimizer_state_bytes = 0;     // bytes of optimizer state this rank holds (1/W of it when sharded)
  bool sharded = false;                  // --shard-optimizer
  double train_seconds = 0;
  double samples_per_second = 0;         // the whole run (its first window includes start-up)
  double steady_samples_per_second = 0;  // after the run's first window (the whole run if it had one)
  int64_t device_peak_bytes = 0;         // CUDA: peak bytes allocated by the caching allocator (0 on the CPU)
  double gpu_busy = std::numeric_limits<double>::quiet_NaN();  // --gpu-busy-steps: device busy / wall time
  int64_t gpu_busy_windows = 0;          // windows it was measured over
  int64_t graph_replays = 0;             // --cuda-graphs: micro-steps replayed (the others ran eagerly)
  int64_t tail_replays = 0;              // --cuda-graphs: window tails replayed
  bool stopped = false;   // a stop signal ended the run early, at a window boundary (run/preemption.h)
  int stop_signal = 0;    // which signal
};

}  // namespace vdp
