// One entry point for a program's main. vdp-train is `return vdp::run(argc, argv);`; a program with
// its own data, model and loss passes a RunSpec whose make_task builds them:
//
//   int main(int argc, char** argv) {
//     vdp::RunSpec spec;
//     spec.program = "my-train";
//     spec.defaults = {{"global-batch", "64"}, {"micro-batch", "16"}};
//     spec.make_task = [](const vdp::Config& cfg) { vdp::Task t; ...; return t; };
//     return vdp::run(argc, argv, spec);
//   }
//
// run() parses the options (every vdp-train option works, on the command line or in an INI file),
// starts MPI, builds the task, trains, prints the summary, and returns the exit code. Any error
// becomes one line on stderr and its exit code on every rank (README, "Exit codes and failures"):
// 2 bad input (also an exception the program's own code throws as vdp::UserError), 3 I/O or out of
// memory, 4 a rank timed out, 1 anything else; a failing rank ends the whole job, no rank hangs.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "vdp/config/config.h"
#include "vdp/task/task.h"
#include "vdp/train/trainer.h"

namespace vdp {

struct RunSpec {
  std::string program = "vdp-train";  // the name in --help and in every message
  // The program's defaults, as (option name without --, value): under the command line and the
  // INI file, over vdp-train's defaults.
  std::vector<std::pair<std::string, std::string>> defaults;
  // Builds the task from the parsed options, on every rank. Empty: the built-in task named by
  // --dataset and --model. When set, --dataset, --model and --data-dir are the program's business.
  std::function<Task(const Config&)> make_task;
  // On every rank, after the trainer is made (the model is on its device, resumed if asked) and
  // before training: the place for trainer.on_step / on_slot.
  std::function<void(Trainer&)> before_fit;
  // On every rank, after training; returns the exit code (0 when not set). Not called when a stop
  // signal ended the run early (exit 5).
  std::function<int(Trainer&, const TrainResult&)> after_fit;
};

int run(int argc, char** argv, const RunSpec& spec = {});

}  // namespace vdp
