// vdp-bench: helpers shared by the sections.
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


double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

vdp::Config make_config(std::vector<std::string> args) {
  args.insert(args.begin(), "vdp-bench");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  vdp::Config c = vdp::parse_config(static_cast<int>(argv.size()), argv.data()).config;
  c.quiet = true;
  c.eval = false;
  return c;
}

// The model and data every timing section uses: the Fashion-MNIST CNN.
std::vector<std::string> cnn_args(int64_t global_batch, int64_t micro_batch, int64_t steps) {
  return {"--dataset", "fashion-mnist", "--model", "fmnist-cnn", "--global-batch", std::to_string(global_batch),
          "--micro-batch", std::to_string(micro_batch), "--max-steps", std::to_string(steps), "--optimizer", "sgd",
          "--lr", "0.01", "--momentum", "0.9"};
}

std::string self_exe() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  VDP_CHECK(n > 0, "cannot find this program's path");
  buf[n] = 0;
  return buf;
}

// Runs a shell command and returns the last line of its output that parses as a JSON object.
json run_child(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  VDP_CHECK(p != nullptr, "cannot run: ", cmd);
  std::string out, line;
  char buf[4096];
  while (fgets(buf, sizeof buf, p)) out += buf;
  const int rc = pclose(p);
  VDP_CHECK(rc == 0, "benchmark child failed (", rc, "): ", cmd, "\n", out);
  json last;
  std::istringstream in(out);
  while (std::getline(in, line))
    if (!line.empty() && line[0] == '{') try {
        last = json::parse(line);
      } catch (...) {
      }
  VDP_CHECK(last.is_object(), "benchmark child printed no result: ", cmd, "\n", out);
  return last;
}

std::string mpirun_prefix(int np) {
  std::string s = "mpirun -np " + std::to_string(np) + " --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 ";
  if (getuid() == 0) s += "--allow-run-as-root ";
  return s;
}

}  // namespace vdp::bench
