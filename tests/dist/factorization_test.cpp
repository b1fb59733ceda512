// Factorization invariance across ranks (include/vdp/README.md, "The plan, Exact weighting"): W ranks × K micro-steps × m samples give
// the parameters of single-process training on the whole global batch, with B not divisible by
// W·m, N not divisible by B, a last step smaller than W (empty slots), and a token-weighted loss.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "../train/train_test_util.h"
#include "vdp/dist/factory.h"
#include "vdp/dist/mpi_env.h"

namespace vdp {
namespace {

using testing::with;
using testing::world;

using testing::rel_diff;
using testing::run_vdp;

using testing::kOptimizers;
using testing::kRegression;

void expect_matches_single_process(const std::vector<std::string>& base, const std::vector<const char*>& ms,
                                   double tol, const char* full_batch) {
  // The reference: one process, the whole global batch in one micro-batch.
  const auto ref = run_vdp(with(base, {"--micro-batch", full_batch}));
  for (const char* m : ms) {
    const auto got = run_vdp(with(base, {"--micro-batch", m}), world());
    EXPECT_LE(rel_diff(got.params, ref.params), tol) << "W=" << MpiEnv::get().size() << " m=" << m;
    EXPECT_NEAR(got.result.last_loss, ref.result.last_loss, 1e3 * tol * std::abs(ref.result.last_loss));
  }
}

TEST(Factorization, Float64EveryOptimizer) {
  for (const auto& o : kOptimizers)
    expect_matches_single_process(with(with(kRegression, o), {"--dtype", "float64"}), {"1", "2", "3", "5"}, 1e-10, "10");
}

TEST(Factorization, Float32) {
  for (const auto& o : kOptimizers)
    expect_matches_single_process(with(with(kRegression, o), {"--dtype", "float32"}), {"1", "3"}, 1e-5, "10");
}

TEST(Factorization, TokenWeightedSequences) {
  const std::vector<std::string> base = {"--dataset", "sequence", "--model", "seq-gru", "--samples", "37",
                                         "--global-batch", "8", "--epochs", "2", "--dtype", "float64",
                                         "--hidden", "12", "--optimizer", "adam", "--lr", "0.01"};
  expect_matches_single_process(base, {"1", "2", "3"}, 1e-10, "8");
}

TEST(Factorization, ConvnetBce) {
  const std::vector<std::string> base = {"--dataset", "bce-toy", "--model", "seed-convnet", "--samples", "29",
                                         "--global-batch", "7", "--epochs", "2", "--dtype", "float64",
                                         "--optimizer", "sgd", "--lr", "0.5", "--momentum", "0.5"};
  expect_matches_single_process(base, {"1", "2"}, 1e-10, "7");
}

TEST(Factorization, EverySampleExactlyOncePerEpoch) {
  // N = 101 is prime, so no (W, m) divides it; each rank reports the ids it consumed and the
  // reduced histogram must be all ones for every epoch.
  for (const char* m : {"1", "3", "4"}) {
    Config cfg = testing::config_from(with(kRegression, {"--micro-batch", m}));
    cfg.eval = false;
    Task task = make_task(cfg);
    auto comm = world();
    Trainer trainer(cfg, task, comm);
    torch::Tensor seen = torch::zeros({2, 101}, torch::kInt64);
    trainer.on_slot([&](int64_t e, int64_t, int64_t, const std::vector<int64_t>& ids) {
      for (int64_t i : ids) seen[e][i] += 1;
    });
    trainer.fit();
    comm->all_reduce_sum(seen);
    EXPECT_TRUE(torch::equal(seen, torch::ones({2, 101}, torch::kInt64))) << "m=" << m;
  }
}

TEST(Factorization, BytesPerStepAreGradientsPlusTheTailWhateverK) {
  Config cfg = testing::config_from(with(kRegression, {"--dtype", "float64"}));
  Task task = make_task(cfg);
  int64_t params = 0;
  for (const auto& p : task.model->parameters()) params += p.numel();
  for (const char* m : {"1", "2", "5"}) {
    const auto got = run_vdp(with(with(kRegression, {"--dtype", "float64"}), {"--micro-batch", m}), world());
    EXPECT_EQ(got.result.allreduce_bytes_per_step, (params + 5) * 8) << "m=" << m;
  }
}

}  // namespace
}  // namespace vdp

namespace vdp {
namespace {

using testing::with;
using testing::world;

TEST(Reducer, SmallBucketsWithAndWithoutOverlapGiveTheSameResult) {
  // ~1 KB buckets split the MLP into many buckets; the hooks of the last micro-step launch them in
  // order. Overlap on and off must agree with each other and with single-process training.
  const std::vector<std::string> base = {"--dataset", "regression", "--model", "mlp", "--samples", "101",
                                         "--global-batch", "10", "--epochs", "2", "--hidden", "16",
                                         "--dtype", "float64", "--optimizer", "adam", "--lr", "0.01",
                                         "--micro-batch", "2"};
  auto comm = world();
  const auto ref = testing::run_vdp(with(base, {"--overlap=false", "--bucket-mb", "100"}));
  const auto on = testing::run_vdp(with(base, {"--overlap=true", "--bucket-mb", "0.001"}), comm);
  const auto off = testing::run_vdp(with(base, {"--overlap=false", "--bucket-mb", "0.001"}), comm);
  EXPECT_LE(testing::rel_diff(on.params, ref.params), 1e-10);
  EXPECT_LE(testing::rel_diff(off.params, ref.params), 1e-10);
  EXPECT_LE(testing::rel_diff(on.params, off.params), 1e-12);
  EXPECT_EQ(on.result.allreduce_bytes_per_step, off.result.allreduce_bytes_per_step);
}

}  // namespace
}  // namespace vdp
