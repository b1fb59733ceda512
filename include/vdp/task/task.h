// A task bundles what the trainer needs besides the schedule: data, model, loss and score. The
// built-in tasks come from the configuration; a library user fills one with their own parts.
#pragma once

#include <memory>

#include "vdp/config/config.h"
#include "vdp/data/dataset.h"
#include "vdp/nn/models.h"
#include "vdp/task/loss.h"

namespace vdp {

struct Task {
  std::shared_ptr<Dataset> train;
  std::shared_ptr<Dataset> test;   // may be null: no evaluation
  std::shared_ptr<Net> model;
  LossFn loss;
  ScoreFn score;                   // may be empty: evaluation reports the loss only
  // Expected loss items per sample (1 for per-sample losses, mean tokens per sequence otherwise).
  // Only sets the magnitude hint c of include/vdp/README.md, "Exact weighting"; it cancels exactly.
  double items_per_sample = 1.0;
};

// The dataset, model, loss and score that `cfg` names. Reads data files (UserError on bad ones).
Task make_task(const Config& cfg);

}  // namespace vdp
