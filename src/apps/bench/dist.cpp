// vdp-bench section dist: the reduction vs a bare MPI_Allreduce, bytes per step, overlap.
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

// --- dist: the reduction's bandwidth, bytes per step, overlap (run under mpirun -np 2) ---------
json child_dist(int64_t steps) {
  vdp::MpiEnv& env = vdp::MpiEnv::get();
  vdp::Config base = make_config(cnn_args(64, 16, steps));
  auto comm = vdp::make_communicator(base, env);
  const int w = comm->size();
  json out = {{"world_size", w}};

  // Bytes per step for several K: the same, since only the flat buffer travels.
  json bytes = json::array();
  for (int64_t k : {1, 4, 16}) {
    vdp::Config c = make_config(cnn_args(16 * w * k, 16, 2));
    vdp::Trainer t(c, vdp::make_task(c), comm);
    bytes.push_back({{"K", k}, {"bytes_per_step", t.fit().allreduce_bytes_per_step}});
  }
  out["allreduce_bytes"] = bytes;

  // The reduction of the CNN's flat buffer vs a bare MPI_Allreduce of the same size.
  {
    vdp::Task task = vdp::make_task(base);
    auto params = task.model->parameters();
    std::vector<std::string> names(params.size(), "p");
    vdp::FlatGrads flat(params, names);
    vdp::WindowReducer reducer(flat, params, comm, 25'000'000, false);
    const int64_t n = flat.buffers()[0].numel();
    auto raw = torch::zeros({n});
    const int reps = 50;
    double ours = 1e30, bare = 1e30;
    for (int round = 0; round < 3; ++round) {
      comm->barrier();
      auto t0 = Clock::now();
      for (int i = 0; i < reps; ++i) reducer.finish();
      ours = std::min(ours, since(t0) / reps);
      comm->barrier();
      t0 = Clock::now();
      for (int i = 0; i < reps; ++i)
        MPI_Allreduce(MPI_IN_PLACE, raw.data_ptr(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, env.world());
      bare = std::min(bare, since(t0) / reps);
    }
    const double b = static_cast<double>(reducer.bytes());
    const double bus = 2.0 * (w - 1) / w;
    out["allreduce"] = {{"bytes", reducer.bytes()},
                        {"vdp_seconds", ours},
                        {"vdp_algbw_gbps", b / ours / 1e9},
                        {"vdp_busbw_gbps", b / ours / 1e9 * bus},
                        {"mpi_seconds", bare},
                        {"mpi_algbw_gbps", b / bare / 1e9},
                        {"mpi_busbw_gbps", b / bare / 1e9 * bus},
                        {"vdp_vs_mpi_time", ours / bare}};
  }

  // Overlap on vs off: mean window time at K = 4.
  json overlap = json::object();
  for (bool on : {false, true, false, true}) {
    vdp::Config c = make_config(cnn_args(16 * w * 4, 16, steps));
    c.overlap = on;
    c.bucket_mb = 0.25;  // several buckets for the 1.7 MB CNN, so there is something to overlap
    vdp::Trainer t(c, vdp::make_task(c), comm);
    vdp::TrainResult r = t.fit();
    const double window = r.train_seconds / static_cast<double>(r.steps);
    const char* key = on ? "on_window_seconds" : "off_window_seconds";
    overlap[key] = overlap.contains(key) ? std::min(overlap[key].get<double>(), window) : window;
  }
  overlap["off_vs_on"] = overlap["off_window_seconds"].get<double>() / overlap["on_window_seconds"].get<double>();
  out["overlap"] = overlap;
  return out;
}

}  // namespace vdp::bench
