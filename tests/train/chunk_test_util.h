// Runs with chunks and injected out-of-memory errors, for the single- and multi-rank tests.
#pragma once

#include <c10/util/Exception.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "train_test_util.h"

namespace vdp::testing {

enum class Fault { None, Forward, Backward };

// Throw c10::OutOfMemoryError whenever a forward of more than `above_rows` rows runs, from window
// `from_step` on: after forward (the loss hook) or during backward (a hook on the gradient of a
// parameter in the middle of the model, so part of the gradients is already in the flat buffer).
struct FaultPlan {
  Fault where = Fault::None;
  int64_t above_rows = 0;
  int64_t from_step = 0;
};

struct ChunkedRun {
  torch::Tensor params;
  TrainResult result;
  int64_t forwards = 0;                                // forwards that ran to their loss
  std::vector<std::pair<int64_t, int64_t>> recoveries;  // (chunk before, chunk after) per recovery
  std::vector<int64_t> recovery_steps;
  int64_t final_chunk = 0;
};

inline ChunkedRun run_chunked(const std::vector<std::string>& args, FaultPlan fault = {},
                              std::shared_ptr<Communicator> comm = std::make_shared<SelfCommunicator>()) {
  Config cfg = config_from(args);
  cfg.eval = false;
  cfg.quiet = true;
  Trainer trainer(cfg, make_task(cfg), comm);
  ChunkedRun out;
  int64_t rows = 0, step = 0;
  auto too_big = [&] { return fault.where != Fault::None && step >= fault.from_step && rows > fault.above_rows; };
  trainer.on_loss([&](const StepRecord& window, int64_t, const Batch& batch, LossSum&) {
    rows = batch.size(), step = window.step;
    TORCH_CHECK_WITH(OutOfMemoryError, !(fault.where == Fault::Forward && too_big()), "injected: ", rows,
                     " rows do not fit");
    ++out.forwards;
  });
  std::vector<torch::Tensor> params = trainer.parameters();
  if (fault.where == Fault::Backward) {
    const torch::Tensor middle = params[params.size() / 2];
    middle.register_hook([&](const torch::Tensor& grad) {
      TORCH_CHECK_WITH(OutOfMemoryError, !too_big(), "injected in backward: ", rows, " rows do not fit");
      return grad;
    });
  }
  trainer.on_out_of_memory([&](int64_t at, int64_t from, int64_t to, const std::string&) {
    out.recoveries.emplace_back(from, to);
    out.recovery_steps.push_back(at);
  });
  out.result = trainer.fit();
  out.params = flat_params(trainer.model());
  out.final_chunk = trainer.chunk();
  return out;
}

}  // namespace vdp::testing
