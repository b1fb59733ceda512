// --shard-optimizer (optim/shard.h) at W = 1 (self) and the launch's W: sharded = unsharded = the
// single-process full batch for every optimizer, with clipping, uneven and empty slots, a short
// last step and a token-weighted loss (float64 <= 1e-10, float32 <= 1e-5); an injected overflow
// skips on every rank and leaves parameters and the (gathered) optimizer state bit-identical; a
// parameter that straddles shards, one that gets no gradient in some windows and a rank whose shard
// holds padding only; per-rank state bytes 1/W of the unsharded within one alignment unit and wire
// bytes those of the all-reduce; and (at W=4) a run resumed sharded W=3 -> unsharded W=2 -> sharded
// W=4 equal to the uninterrupted one.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <mpi.h>

#include <filesystem>
#include <limits>

#include "../train/train_test_util.h"
#include "vdp/ckpt/checkpoint.h"
#include "vdp/dist/mpi_communicator.h"
#include "vdp/dist/mpi_env.h"
#include "vdp/optim/exchange.h"
#include "vdp/optim/optim.h"
#include "vdp/optim/shard.h"

namespace vdp {
namespace {

using testing::rel_diff;
using testing::run_vdp;
using testing::with;
using testing::world;

using testing::kRegression;

// Every optimizer of the factorization tests, plain SGD (no state at all), AdamW with clipping,
// Adam and AdamW with AMSGrad (a third state tensor).
std::vector<std::vector<std::string>> optimizers() {
  auto all = testing::kOptimizers;
  all.push_back({"--optimizer", "sgd", "--lr", "0.05"});
  all.push_back({"--optimizer", "adamw", "--lr", "0.01", "--weight-decay", "0.05", "--clip-grad-norm", "0.3"});
  all.push_back({"--optimizer", "adam", "--lr", "0.01", "--amsgrad", "--weight-decay", "0.01"});
  all.push_back({"--optimizer", "adamw", "--lr", "0.01", "--amsgrad", "--clip-grad-norm", "0.3"});
  return all;
}

void expect_sharded_equal(const std::vector<std::string>& base, const std::vector<const char*>& ms, double tol,
                          const char* full_batch) {
  const auto ref = run_vdp(with(base, {"--micro-batch", full_batch}));
  const int w = MpiEnv::get().size();
  for (const char* m : ms) {
    const auto one = run_vdp(with(base, {"--micro-batch", m, "--shard-optimizer"}));
    const auto sharded = run_vdp(with(base, {"--micro-batch", m, "--shard-optimizer"}), world());
    const auto plain = run_vdp(with(base, {"--micro-batch", m}), world());
    EXPECT_LE(rel_diff(one.params, ref.params), tol) << "W=1 sharded m=" << m;
    EXPECT_LE(rel_diff(sharded.params, ref.params), tol) << "W=" << w << " sharded m=" << m;
    EXPECT_LE(rel_diff(sharded.params, plain.params), tol) << "W=" << w << " sharded vs unsharded m=" << m;
    EXPECT_NEAR(sharded.result.last_loss, ref.result.last_loss, 1e3 * tol * std::abs(ref.result.last_loss));
    EXPECT_TRUE(sharded.result.sharded);
  }
}

TEST(ShardedOptimizer, Float64EveryOptimizerEqualsUnshardedAndTheFullBatch) {
  for (const auto& o : optimizers())
    expect_sharded_equal(with(with(kRegression, o), {"--dtype", "float64"}), {"1", "3"}, 1e-10, "10");
}

TEST(ShardedOptimizer, Float32) {
  for (const auto& o : optimizers())
    expect_sharded_equal(with(with(kRegression, o), {"--dtype", "float32"}), {"2"}, 1e-5, "10");
}

TEST(ShardedOptimizer, TokenWeightedSequences) {
  const std::vector<std::string> base = {"--dataset", "sequence", "--model", "seq-gru", "--samples", "37",
                                         "--global-batch", "8", "--epochs", "2", "--dtype", "float64",
                                         "--hidden", "12", "--optimizer", "adam", "--lr", "0.01",
                                         "--clip-grad-norm", "0.5"};
  expect_sharded_equal(base, {"1", "3"}, 1e-10, "8");
}

// 46 parameters laid out (reverse module order) as z[0,4) v[4,12) u[12,14) w[14,46): w straddles the
// shard boundaries at 16 and 32; at W=4 (shards of 16 of 64) rank 3 holds padding only, at W=3 rank
// 2 holds 14 elements and 2 of padding. z is added only to samples whose first input exceeds 1.2
// (about one in nine): in many windows, on some ranks, it gets no gradient at all.
struct Awkward : Net {
  torch::Tensor w, u, v, z;
  Awkward() {
    torch::manual_seed(11);
    w = register_parameter("w", torch::randn({16, 2}, torch::kFloat64) * 0.3);
    u = register_parameter("u", torch::randn({2}, torch::kFloat64));
    v = register_parameter("v", torch::randn({2, 4}, torch::kFloat64) * 0.5);
    z = register_parameter("z", torch::randn({4}, torch::kFloat64));
  }
  torch::Tensor forward(const Batch& b) override {
    torch::Tensor out = torch::tanh(b.x.matmul(w) + u).matmul(v);
    // Per sample (so any factorization gives the full batch's gradient), and outside the graph of
    // a micro-batch where no sample qualifies.
    const torch::Tensor rows = (b.x.select(1, 0) > 1.2).nonzero().squeeze(1);
    if (rows.numel() > 0) out = out.index_add(0, rows, z.expand({rows.numel(), 4}));
    return out;
  }
};

testing::RunOutput run_awkward(const std::vector<std::string>& args, std::shared_ptr<Communicator> comm) {
  Config cfg = testing::config_from(args);
  cfg.eval = false, cfg.quiet = true;
  Task task = make_task(cfg);
  task.model = std::make_shared<Awkward>();
  Trainer trainer(cfg, task, comm);
  testing::RunOutput out;
  out.result = trainer.fit();
  out.params = testing::flat_params(trainer.model());
  return out;
}

TEST(ShardedOptimizer, StraddlingUnusedAndEmptyShardsDropNothing) {
  const std::vector<std::string> base = {"--dataset", "regression", "--model", "mlp", "--samples", "53", "--global-batch", "12",
                                         "--epochs", "3", "--dtype", "float64", "--optimizer", "adam", "--lr",
                                         "0.05", "--clip-grad-norm", "0.7", "--seed", "2"};
  const auto ref = run_awkward(with(base, {"--micro-batch", "12"}), std::make_shared<SelfCommunicator>());
  const auto plain = run_awkward(with(base, {"--micro-batch", "2"}), world());
  const auto sharded = run_awkward(with(base, {"--micro-batch", "2", "--shard-optimizer"}), world());
  EXPECT_LE(rel_diff(plain.params, ref.params), 1e-10);
  EXPECT_LE(rel_diff(sharded.params, ref.params), 1e-10);
  // Every parameter moved (none was dropped), and z moved as in the reference.
  const Awkward fresh;
  EXPECT_GT((sharded.params.slice(0, 0, 32) - fresh.w.flatten()).abs().min().item<double>(), 0);
  EXPECT_LE((sharded.params.slice(0, 42, 46) - ref.params.slice(0, 42, 46)).abs().max().item<double>(),
            1e-10 * ref.params.norm().item<double>());
}

TEST(ShardedOptimizer, InjectedOverflowSkipsOnEveryRankAndKeepsTheState) {
  auto comm = world();
  const int w = comm->size();
  for (const char* precision : {"bf16", "fp16"}) {
    Config cfg = testing::config_from({"--dataset", "regression", "--model", "mlp", "--samples", "400",
                                       "--global-batch", std::to_string(8 * w), "--micro-batch", "4", "--epochs",
                                       "1", "--optimizer", "adam", "--lr", "0.01", "--precision", precision,
                                       "--grad-scaler", "on", "--scaler-init", "1024", "--max-steps", "5",
                                       "--shard-optimizer"});
    cfg.quiet = true, cfg.eval = false;
    Trainer t(cfg, make_task(cfg), comm);
    const int64_t bad_step = 2;
    t.on_loss([&](const StepRecord& win, int64_t k, const Batch&, LossSum& loss) {
      if (win.step == bad_step && k == 1 && comm->rank() == w - 1)
        loss.sum = loss.sum * std::numeric_limits<double>::infinity();
    });
    // The shard optimizer's own tensors (one per buffer) and their state on this rank.
    const std::vector<torch::Tensor> stepped = t.optimizer().param_groups()[0].params();
    torch::Tensor params_before;
    NamedTensors state_before;
    t.on_step([&](const StepRecord& r) {
      if (r.step == bad_step - 1) {
        params_before = testing::flat_params(t.model());
        state_before = optimizer_state(t.optimizer(), stepped);
      }
      if (r.step == bad_step) {
        EXPECT_TRUE(r.skipped) << precision << " rank " << comm->rank();
        EXPECT_TRUE(torch::equal(testing::flat_params(t.model()), params_before)) << precision;
        const NamedTensors after = optimizer_state(t.optimizer(), stepped);
        ASSERT_EQ(after.size(), state_before.size());
        for (size_t i = 0; i < after.size(); ++i)
          EXPECT_TRUE(torch::equal(after[i].second, state_before[i].second)) << precision << " " << after[i].first;
      } else {
        EXPECT_FALSE(r.skipped) << precision << " step " << r.step;
      }
    });
    t.fit();
    EXPECT_EQ(t.skipped_steps(), 1) << precision;
    const auto [sum, l2] = parameter_checksum(t.model());
    const auto ref = comm->broadcast_host({sum, l2}, 0);
    EXPECT_EQ(ref[0], sum) << precision;
    EXPECT_EQ(ref[1], l2) << precision;
  }
}

TEST(ShardedOptimizer, StateIsOneWthAndTheWireCarriesTheAllReducesBytes) {
  const std::vector<std::string> base = {"--dataset", "regression", "--model", "mlp", "--samples", "101",
                                         "--global-batch", "10", "--hidden", "256", "--optimizer", "adam", "--lr",
                                         "0.01", "--micro-batch", "2", "--dtype", "float32", "--max-steps", "3"};
  auto comm = world();
  const int w = comm->size();
  const auto plain = run_vdp(base, comm);
  const auto sharded = run_vdp(with(base, {"--shard-optimizer"}), comm);
  // Adam keeps two moments: each shard of each is at most one alignment unit beyond 1/W.
  const int64_t unit = 2 * kShardAlign * 4;
  const double share = static_cast<double>(plain.result.optimizer_state_bytes) / w;
  EXPECT_GE(static_cast<double>(sharded.result.optimizer_state_bytes), share - unit);
  EXPECT_LE(static_cast<double>(sharded.result.optimizer_state_bytes), share + unit);
  // All ranks together hold the whole state and its padding, nothing more.
  const auto total = comm->all_reduce_host({static_cast<double>(sharded.result.optimizer_state_bytes)});
  EXPECT_GE(total[0], static_cast<double>(plain.result.optimizer_state_bytes));
  EXPECT_LE(total[0], static_cast<double>(plain.result.optimizer_state_bytes) + w * unit);
  // Reduce-scatter + all-gather of the padded buffer, plus the two small all-reduces (scalars; the
  // inf flag and each parameter's part of the norm), against the all-reduce of the same buffer.
  Config cfg = testing::config_from(base);
  Task task = make_task(cfg);
  const int64_t params = static_cast<int64_t>(task.model->parameters().size());
  const int64_t pad = 2 * kShardAlign * w * 4;
  const int64_t small = ring_all_reduce_bytes((5 + 1 + params) * 8, w);
  EXPECT_GE(sharded.result.wire_bytes_per_step, plain.result.wire_bytes_per_step - 1);
  EXPECT_LE(sharded.result.wire_bytes_per_step, plain.result.wire_bytes_per_step + pad + small);
  if (w > 1) EXPECT_LE(sharded.result.wire_bytes_per_step, 1.01 * plain.result.wire_bytes_per_step);
}

// A communicator over the first `n` ranks of the launch (null on the others).
std::shared_ptr<Communicator> first_ranks(int n) {
  MPI_Comm sub = MPI_COMM_NULL;
  const int me = MpiEnv::get().rank();
  MPI_Comm_split(MPI_COMM_WORLD, me < n ? 0 : MPI_UNDEFINED, me, &sub);
  if (sub == MPI_COMM_NULL) return nullptr;
  return std::make_shared<MpiCommunicator>(sub, 60);
}

TEST(ShardedOptimizer, ResumeShardedW3UnshardedW2ShardedW4IsTheSameRun) {
  if (MpiEnv::get().size() != 4) GTEST_SKIP() << "needs W=4 (mpi.w4)";
  auto comm = world();
  const std::string dir = comm->broadcast_string(
      (std::filesystem::temp_directory_path() / ("vdp_shard_resume_" + std::to_string(::getpid()))).string(), 0);
  const std::vector<std::string> base = {"--dataset", "regression", "--model", "mlp", "--samples", "101",
                                         "--global-batch", "12", "--epochs", "3", "--hidden", "16", "--dtype",
                                         "float64", "--optimizer", "adam", "--lr", "0.01", "--clip-grad-norm",
                                         "0.5", "--micro-batch", "2"};
  const auto whole = run_vdp(base);
  const auto ck = with(base, {"--checkpoint-dir", dir});
  if (auto c3 = first_ranks(3)) run_vdp(with(ck, {"--shard-optimizer", "--max-steps", "7"}), c3);
  comm->barrier();
  if (auto c2 = first_ranks(2)) run_vdp(with(ck, {"--resume", "auto", "--max-steps", "15"}), c2);
  comm->barrier();
  const auto last = run_vdp(with(ck, {"--shard-optimizer", "--resume", "auto"}), comm);
  EXPECT_LE(rel_diff(last.params, whole.params), 1e-10);
  comm->barrier();
  if (comm->rank() == 0) remove_tree(dir);
}

}  // namespace
}  // namespace vdp
