// vdp-bench sections ddp, gpt and gpu: the PyTorch reference scripts in tests/reference.
#include <ATen/ATen.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/sgd.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "bench.h"
#include "vdp/core/error.h"
#include "vdp/dist/factory.h"
#include "vdp/dist/mpi_env.h"
#include "vdp/grad/flat_grads.h"
#include "vdp/grad/reducer.h"
#include "vdp/plan/plan.h"
#include "vdp/train/trainer.h"

namespace vdp::bench {

// Runs tests/reference/SCRIPT with vdp-train beside this program and ARGS; its one JSON line back.
json run_script(const std::string& python, const char* script, const std::string& args) {
  std::ostringstream cmd;
  cmd << "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " << python << " " << VDP_SOURCE_DIR
      << "/tests/reference/" << script << " --vdp-train " << self_exe().substr(0, self_exe().rfind('/'))
      << "/vdp-train --json " << args << " 2>/dev/null";
  return run_child(cmd.str());
}

// ddp: vdp vs PyTorch DDP on the Fashion-MNIST CNN, W=2.
json section_ddp(const std::string& python, int64_t steps) {
  return run_script(python, "ddp_reference.py",
                    "--bench --global-batch 128 --steps " + std::to_string(steps) + " --micro-batches 4 64");
}

// gpt: vdp vs PyTorch DDP on a small GPT, token-weighted loss, AdamW, W=2.
json section_gpt(const std::string& python, int64_t steps) {
  return run_script(python, "gpt_ddp_reference.py",
                    "--steps " + std::to_string(std::max<int64_t>(steps, 12)) + " --warmup 5 --micro-batches 1 2 8");
}

// gpu: vdp vs PyTorch eager / graphed by hand on one GPU.
json section_gpu(const std::string& python) { return run_script(python, "window_bench.py", "--device cuda"); }

// gpt-gpu: GPT-2 small's shape on one GPU, vdp vs PyTorch eager and torch.compile.
json section_gpt_gpu(const std::string& python) { return run_script(python, "gpt_gpu_bench.py", "--device cuda"); }

}  // namespace vdp::bench
