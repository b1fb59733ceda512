// What a run reports as it goes (rank 0): the JSON-lines metrics records, TensorBoard scalars, the
// progress line, the periodic log line and the epoch line. Kept apart from the trainer so the
// trainer holds the loop and nothing else.
#pragma once

#include <memory>

#include "vdp/config/config.h"
#include "vdp/device/busy.h"
#include "vdp/report/metrics.h"
#include "vdp/report/tensorboard.h"
#include "vdp/report/records.h"

namespace vdp {

class StepLog {
 public:
  // `leader`: this rank writes (rank 0); others hold a StepLog that does nothing. `resume_step` >= 0:
  // the metrics file of the run being resumed is kept up to that step (MetricsWriter).
  StepLog(const Config& cfg, bool leader, int64_t resume_step);

  void start(int64_t step, const std::string& resumed_from, int world_size, int64_t micro_steps, int64_t total_steps);
  // One optimizer step done. `rate`: samples/s so far; `eta_s`: estimated seconds left.
  void step(const StepRecord& rec, int64_t global_step, int64_t per_epoch, double elapsed_s, double rate, double eta_s,
            bool scaler_enabled);
  // One epoch done: `samples` trained in `train_seconds` (the windows only), then `other_seconds` of
  // evaluation, checkpoints and checks. The line's samples/s is samples / train_seconds.
  // Token tasks also show the epoch's real target tokens (`items`) per second.
  // steady_rate: samples/s after the run's first window, shown beside an epoch that held that window.
  void epoch(int64_t epoch, int64_t global_step, double train_loss, const EvalResult& ev, int64_t samples,
             double items, double train_seconds, double other_seconds, double steady_rate = 0);
  void final(const TrainResult& r, int64_t skipped_steps, double loss_scale, int world_size, const std::string& backend,
             int64_t micro_steps);
  void stopped(int64_t global_step, int signal, bool checkpointed);
  // This rank recovered from an out-of-memory error in `step` by running its slots in chunks of
  // `to` samples instead of `from`: one line on stderr (every rank that recovers says so, unless
  // quiet), and a metrics event (rank 0's file).
  void out_of_memory(int rank, int64_t step, int64_t from, int64_t to, const std::string& why);
  // A start-up decision (the micro-batch search's choice): `line` on stdout (rank 0, unless quiet)
  // and `event` in the metrics file.
  void decided(const std::string& line, const nlohmann::json& event);
  // --gpu-busy-steps: the measurement over steps [first, end).
  void busy(const BusyResult& b, int64_t first, int64_t end);

 private:
  // Token tasks also report perplexity, exp(test loss).
  bool token_task() const { return cfg_.dataset == DatasetKind::Tokens || cfg_.dataset == DatasetKind::Sequence; }
  const Config& cfg_;
  bool leader_, chatty_;
  std::unique_ptr<MetricsWriter> metrics_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
  ProgressLine progress_;
};

}  // namespace vdp
