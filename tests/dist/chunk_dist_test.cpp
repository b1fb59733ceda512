// Chunks and out-of-memory recovery across ranks (train/window.h): ranks that run their slots in
// different chunk sizes (an MPMD launch: --chunk is per rank) and a rank that runs out of memory and
// redoes its windows alone both give the single-process full-batch result, in float64 within 1e-10,
// with uneven slots, a short last step (empty slots at W > 1) and a token loss.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "../train/chunk_test_util.h"
#include "vdp/dist/mpi_env.h"

namespace vdp {
namespace {

using testing::rel_diff;
using testing::with;
using testing::world;

// N = 101 (prime), B = 10, m = 3: uneven slots, and a last step of one sample.
const std::vector<std::string> kRegression = {"--dataset", "regression", "--model", "mlp", "--samples", "101",
                                              "--global-batch", "10", "--epochs", "2",
                                              "--hidden", "16", "--seed", "5", "--dtype", "float64"};
const std::vector<std::vector<std::string>> kOptimizers = {
    {"--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9", "--clip-grad-norm", "0.5"},
    {"--optimizer", "adam", "--lr", "0.01"},
};
const std::vector<std::string> kTokens = {"--dataset", "sequence", "--model", "seq-gru", "--samples", "37",
                                          "--global-batch", "8", "--epochs", "2",
                                          "--dtype", "float64", "--hidden", "12", "--optimizer", "adam", "--lr",
                                          "0.01"};

// m = 3 on every rank: uneven slots against B.
std::vector<std::string> m3(const std::vector<std::string>& args, std::vector<std::string> more = {}) {
  return with(with(args, {"--micro-batch", "3"}), more);
}

// The single-process, whole-batch reference.
torch::Tensor reference(const std::vector<std::string>& args, const char* global_batch) {
  return testing::run_chunked(with(args, {"--micro-batch", global_batch})).params;
}

TEST(ChunksAcrossRanks, EachRankItsOwnChunkSizeEqualsTheFullBatch) {
  const int rank = MpiEnv::get().rank();
  const std::string mine = std::to_string(rank % 3 + 1);  // 1, 2, 3, 1: chunk >= m is the whole slot
  for (const auto& o : kOptimizers) {
    SCOPED_TRACE(o[1]);
    const auto args = with(kRegression, o);
    const auto got = testing::run_chunked(m3(args, {"--chunk", mine}), {}, world());
    EXPECT_LE(rel_diff(got.params, reference(args, "10")), 1e-10) << "rank " << rank << " chunk " << mine;
  }
  const auto got = testing::run_chunked(m3(kTokens, {"--chunk", mine}), {}, world());
  EXPECT_LE(rel_diff(got.params, reference(kTokens, "8")), 1e-10);
}

// The last rank runs out of memory above one row, in forward or half-way through backward, from
// step 3 on; the others never notice. Everyone ends with the clean result.
TEST(OutOfMemoryAcrossRanks, ARankRecoversAloneAndTheResultIsUnchanged) {
  const int rank = MpiEnv::get().rank(), last = MpiEnv::get().size() - 1;
  for (const auto& o : kOptimizers) {
    const auto args = with(kRegression, o);
    const torch::Tensor ref = reference(args, "10");
    for (auto where : {testing::Fault::Forward, testing::Fault::Backward}) {
      SCOPED_TRACE(std::string(o[1]) + (where == testing::Fault::Forward ? " forward" : " backward"));
      const testing::FaultPlan fault = rank == last ? testing::FaultPlan{where, 1, 3} : testing::FaultPlan{};
      const auto got = testing::run_chunked(m3(args), fault, world());
      EXPECT_LE(rel_diff(got.params, ref), 1e-10) << "rank " << rank;
      if (MpiEnv::get().size() > 1)
        EXPECT_EQ(got.recoveries.size(), rank == last ? 2u : 0u) << "3 -> 2 -> 1 on the faulty rank only";
    }
  }
}

// --micro-batch auto with a budget per rank: rank 0 fits less than the others, the ranks agree on
// the largest size as m, rank 0 keeps its own smaller chunk, and training equals the full batch.
TEST(MicroBatchAutoAcrossRanks, EachRankItsOwnBudgetEqualsTheFullBatch) {
  const int rank = MpiEnv::get().rank(), size = MpiEnv::get().size();
  const std::vector<std::string> base = {"--dataset", "regression", "--model", "mlp", "--hidden", "256",
                                         "--samples", "2048", "--global-batch", "1024", "--dtype", "float64",
                                         "--optimizer", "adam", "--lr", "0.001", "--max-steps", "2", "--seed", "4"};
  Config cfg = testing::config_from(with(base, {"--micro-batch", "auto", "--memory-budget", rank == 0 ? "4M" : "8M"}));
  cfg.quiet = true, cfg.eval = false;
  Trainer trainer(cfg, make_task(cfg), world());
  const MicroBatchChoice c = trainer.micro_batch_choice();
  ASSERT_EQ(static_cast<int>(c.fits.size()), size);
  if (size > 1) {
    EXPECT_LT(c.fits[0], c.fits[1]) << "the smaller budget must fit less";
    const int64_t cap = (1024 + size - 1) / size, k = trainer.plan().full_micro_steps();
    EXPECT_EQ(c.micro_batch, (cap + k - 1) / k) << "the smallest m with the same K";
    if (rank == 0) EXPECT_EQ(trainer.chunk(), c.fits[0]) << "rank 0 keeps its own chunk";
  }
  trainer.fit();
  const torch::Tensor got = testing::flat_params(trainer.model());
  const torch::Tensor ref = testing::run_vdp(with(base, {"--micro-batch", "1024"})).params;
  EXPECT_LE(rel_diff(got, ref), 1e-10) << "rank " << rank << " fits " << c.fits[rank] << " m " << c.micro_batch;
}

}  // namespace
}  // namespace vdp
