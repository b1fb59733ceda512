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

// --- ddp: vdp vs PyTorch DDP, through the reference script -------------------------------------
json section_ddp(const std::string& python, int64_t steps) {
  const std::string script = std::string(VDP_SOURCE_DIR) + "/tests/reference/ddp_reference.py";
  std::ostringstream cmd;
  cmd << "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " << python << " " << script
      << " --vdp-train " << self_exe().substr(0, self_exe().rfind('/')) << "/vdp-train --bench --json"
      << " --global-batch 128 --steps " << steps << " --micro-batches 4 64 2>/dev/null";
  return run_child(cmd.str());
}

// --- gpt: vdp vs PyTorch DDP on a small GPT, token-weighted loss, AdamW --------------------------
json section_gpt(const std::string& python, int64_t steps) {
  const std::string script = std::string(VDP_SOURCE_DIR) + "/tests/reference/gpt_ddp_reference.py";
  std::ostringstream cmd;
  cmd << "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " << python << " " << script
      << " --vdp-train " << self_exe().substr(0, self_exe().rfind('/')) << "/vdp-train --json --steps "
      << std::max<int64_t>(steps, 12) << " --warmup 5 --micro-batches 1 2 8 2>/dev/null";
  return run_child(cmd.str());
}

// --- gpu: vdp vs PyTorch eager / graphed by hand on one GPU ------------------------------------
json section_gpu(const std::string& python) {
  const std::string script = std::string(VDP_SOURCE_DIR) + "/tests/reference/window_bench.py";
  std::ostringstream cmd;
  cmd << python << " " << script << " --vdp-train " << self_exe().substr(0, self_exe().rfind('/'))
      << "/vdp-train --device cuda --json 2>/dev/null";
  return run_child(cmd.str());
}

// --- gpt-gpu: GPT-2 small's shape on one GPU, vdp vs PyTorch eager and torch.compile --------------
json section_gpt_gpu(const std::string& python) {
  const std::string script = std::string(VDP_SOURCE_DIR) + "/tests/reference/gpt_gpu_bench.py";
  std::ostringstream cmd;
  cmd << python << " " << script << " --vdp-train " << self_exe().substr(0, self_exe().rfind('/'))
      << "/vdp-train --device cuda --json 2>/dev/null";
  return run_child(cmd.str());
}

}  // namespace vdp::bench
