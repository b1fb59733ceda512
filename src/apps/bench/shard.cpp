// vdp-bench section shard: --shard-optimizer (ZeRO-1) against the replicated optimizer at the same
// W, in one run under mpirun: time per window (steady state: the trainer's rate after its first
// window, the same steps on both sides, sharded and replicated alternating, the better of two runs
// each) and per-rank memory (parameters, gradient buffer, optimizer state), for the Fashion-MNIST CNN
// and a 6-layer gpt (30M parameters with the token shards' GPT-2 vocabulary), Adam in float32.
#include <ATen/ATen.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bench.h"
#include "vdp/ckpt/checkpoint.h"
#include "vdp/dist/factory.h"
#include "vdp/dist/mpi_env.h"
#include "vdp/train/trainer.h"

namespace vdp::bench {
namespace {

// Token shards in llm.c's format (header of 256 int32, uint16 tokens) with random tokens below
// `vocab`, written by rank 0 into `dir`.
void write_token_shards(const std::string& dir, int64_t tokens, int vocab) {
  std::filesystem::create_directories(dir);
  auto g = at::make_generator<at::CPUGeneratorImpl>(7);
  for (const char* name : {"train_000.bin", "val_000.bin"}) {
    const torch::Tensor t = at::randint(0, vocab, {tokens}, g, torch::kInt32).to(torch::kInt16);
    std::vector<int32_t> header(256, 0);
    header[0] = 20240520, header[1] = 1, header[2] = static_cast<int32_t>(tokens);
    std::ofstream f(dir + "/" + name, std::ios::binary);
    f.write(reinterpret_cast<const char*>(header.data()), 256 * 4);
    f.write(static_cast<const char*>(t.data_ptr()), tokens * 2);
  }
}

// Rank 0's figures (the ranks' shards differ by at most one alignment unit).
json measure(const std::vector<std::string>& args, bool sharded, const std::shared_ptr<vdp::Communicator>& shared) {
  std::vector<std::string> a = args;
  if (sharded) a.push_back("--shard-optimizer");
  vdp::Config c = make_config(a);
  vdp::Trainer t(c, vdp::make_task(c), shared);
  const vdp::TrainResult r = t.fit();
  int64_t params = 0;
  for (const auto& p : t.model().parameters()) params += static_cast<int64_t>(p.nbytes());
  return {{"window_s", static_cast<double>(c.global_batch) / r.steady_samples_per_second},
          {"params_bytes", params},
          {"grad_buffer_bytes", r.allreduce_bytes_per_step},
          {"state_bytes", r.optimizer_state_bytes},
          {"wire_bytes", r.wire_bytes_per_step}};
}

}  // namespace

json child_shard(int64_t steps) {
  vdp::MpiEnv& env = vdp::MpiEnv::get();
  auto comm = vdp::make_communicator(make_config(cnn_args(64, 16, 2)), env);
  const int w = comm->size();
  const std::string dir = comm->broadcast_string(
      (std::filesystem::temp_directory_path() / ("vdp_bench_shard_" + std::to_string(::getpid()))).string(), 0);
  if (comm->rank() == 0) write_token_shards(dir, 1 << 18, 4096);
  comm->barrier();
  const std::string n = std::to_string(std::max<int64_t>(steps / 4, 6));
  const std::vector<std::pair<std::string, std::vector<std::string>>> models = {
      {"fmnist-cnn (Adam, B=256, m=32)",
       {"--dataset", "fashion-mnist", "--model", "fmnist-cnn", "--global-batch", "256", "--micro-batch", "32",
        "--max-steps", n, "--optimizer", "adam", "--lr", "0.001"}},
      {"gpt 6x384, context 64 (Adam, B=16 sequences, m=4)",
       {"--dataset", "tokens", "--data-dir", dir, "--model", "gpt", "--layers", "6", "--hidden", "384", "--heads",
        "6", "--context", "64", "--global-batch", "16", "--micro-batch", "4", "--max-steps", n, "--optimizer",
        "adam", "--lr", "0.0003"}},
  };
  json rows = json::array();
  for (const auto& [name, args] : models) {
    json best[2];
    for (int round = 0; round < 2; ++round)
      for (int sharded = 0; sharded < 2; ++sharded) {
        json m = measure(args, sharded == 1, comm);
        if (best[sharded].is_null() || m["window_s"].get<double>() < best[sharded]["window_s"].get<double>())
          best[sharded] = m;
      }
    const json& off = best[0];
    const json& on = best[1];
    int64_t params_count = off["params_bytes"].get<int64_t>() / 4;
    rows.push_back({{"model", name},
                    {"parameters", params_count},
                    {"replicated", off},
                    {"sharded", on},
                    {"time_ratio", on["window_s"].get<double>() / off["window_s"].get<double>()},
                    {"state_ratio", on["state_bytes"].get<double>() / off["state_bytes"].get<double>()},
                    {"bytes_per_param_replicated",
                     (off["params_bytes"].get<double>() + off["grad_buffer_bytes"].get<double>() +
                      off["state_bytes"].get<double>()) / static_cast<double>(params_count)},
                    {"bytes_per_param_sharded",
                     (on["params_bytes"].get<double>() + on["grad_buffer_bytes"].get<double>() +
                      on["state_bytes"].get<double>()) / static_cast<double>(params_count)},
                    {"wire_ratio", on["wire_bytes"].get<double>() / off["wire_bytes"].get<double>()}});
  }
  comm->barrier();
  if (comm->rank() == 0) vdp::remove_tree(dir);
  return {{"world_size", w}, {"steps", n}, {"rows", rows}};
}

}  // namespace vdp::bench
