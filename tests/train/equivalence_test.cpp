// Accumulation equals big-batch training (include/vdp/README.md, "Exact weighting"): the same global batch B split into
// micro-batches of m (m not dividing B, N not divisible by B, so micro-batches and the last window
// are short) gives the parameters of m = B, and of a plain LibTorch loop on the whole batch with a
// mean loss, within 1e-10 (float64) / 1e-5 (float32) relative.
#include <gtest/gtest.h>

#include <torch/nn/functional/loss.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/optimizer.h>

#include "train_test_util.h"
#include "vdp/plan/plan.h"
#include "vdp/optim/fused_optim.h"
#include "vdp/optim/optim.h"

namespace vdp {
namespace {

using testing::with;
using testing::world;

using testing::config_from;
using testing::flat_params;
using testing::rel_diff;
using testing::run_vdp;

// N = 103 samples, B = 10: 11 steps per epoch, the last one holding 3 samples.
const std::vector<std::string> kRegression = {"--dataset", "regression", "--model", "mlp", "--samples", "103",
                                              "--global-batch", "10", "--epochs", "2", "--hidden", "16",
                                              "--seed", "11"};

struct OptCase {
  const char* name;
  std::vector<std::string> args;
};

const std::vector<OptCase> kOptimizers = {
    {"sgd_momentum_nesterov_wd_clip_cosine",
     {"--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9", "--nesterov", "--weight-decay", "1e-3",
      "--clip-grad-norm", "0.5", "--lr-schedule", "cosine", "--warmup-steps", "3"}},
    {"adam_clip_step", {"--optimizer", "adam", "--lr", "0.01", "--clip-grad-norm", "1.0", "--lr-schedule", "step",
                        "--lr-step-size", "5", "--lr-gamma", "0.5", "--weight-decay", "1e-4"}},
    {"adamw_warmup", {"--optimizer", "adamw", "--lr", "0.01", "--weight-decay", "0.01", "--warmup-steps", "4",
                      "--lr-schedule", "cosine", "--min-lr", "0.001"}},
};

void expect_invariant(const std::vector<std::string>& base, const std::vector<std::string>& micro_batches, double tol) {
  const auto ref = run_vdp(with(base, {"--micro-batch", "10"}));
  ASSERT_EQ(ref.result.steps, 22);
  for (const auto& m : micro_batches) {
    const auto got = run_vdp(with(base, {"--micro-batch", m}));
    const double d = rel_diff(got.params, ref.params);
    EXPECT_LE(d, tol) << "m=" << m;
    EXPECT_NEAR(got.result.last_loss, ref.result.last_loss, tol * std::abs(ref.result.last_loss) * 10) << "m=" << m;
  }
}

TEST(Equivalence, Float64EveryOptimizer) {
  for (const auto& o : kOptimizers) {
    SCOPED_TRACE(o.name);
    expect_invariant(with(with(kRegression, o.args), {"--dtype", "float64"}), {"1", "3", "4", "7"}, 1e-10);
  }
}

TEST(Equivalence, Float32EveryOptimizer) {
  for (const auto& o : kOptimizers) {
    SCOPED_TRACE(o.name);
    expect_invariant(with(with(kRegression, o.args), {"--dtype", "float32"}), {"1", "3", "7"}, 1e-5);
  }
}

TEST(Equivalence, BceToyConvnetFloat64) {
  const std::vector<std::string> base = {"--dataset", "bce-toy", "--model", "seed-convnet", "--samples", "53",
                                         "--global-batch", "10", "--epochs", "2", "--dtype", "float64",
                                         "--optimizer", "sgd", "--lr", "0.5", "--momentum", "0.5"};
  const auto ref = run_vdp(with(base, {"--micro-batch", "10"}));
  for (const char* m : {"1", "4", "6"}) {
    EXPECT_LE(rel_diff(run_vdp(with(base, {"--micro-batch", m})).params, ref.params), 1e-10) << "m=" << m;
  }
}

TEST(Equivalence, TokenWeightedSequencesFloat64) {
  // Sequences of random length: micro-batches hold different token counts, so a per-micro-batch
  // mean would weight tokens unequally; the (sum, count) path must not.
  const std::vector<std::string> base = {"--dataset", "sequence", "--model", "seq-gru", "--samples", "45",
                                         "--global-batch", "8", "--epochs", "1", "--dtype", "float64",
                                         "--hidden", "12", "--optimizer", "adam", "--lr", "0.01"};
  const auto ref = run_vdp(with(base, {"--micro-batch", "8"}));
  ASSERT_EQ(ref.result.steps, 6);
  for (const char* m : {"1", "3", "5"}) {
    EXPECT_LE(rel_diff(run_vdp(with(base, {"--micro-batch", m})).params, ref.params), 1e-10) << "m=" << m;
  }
}

// An independent reference: a plain LibTorch loop on the whole global batch with torch's
// mean-reduced loss and torch's clip_grad_norm_, on the same sample order.
torch::Tensor plain_libtorch_reference(const std::vector<std::string>& args) {
  Config cfg = config_from(args);
  Task task = make_task(cfg);
  std::vector<torch::Tensor> params = task.model->parameters();
  auto fused = make_optimizer(cfg, params);
  torch::optim::Optimizer* opt = &fused->base();
  Plan plan({task.train->size(), cfg.global_batch, 1, cfg.global_batch, cfg.seed, cfg.drop_last});
  const int64_t total = plan.steps_per_epoch() * cfg.epochs;
  LrSchedule schedule(cfg, total);
  int64_t step = 0;
  for (int64_t e = 0; e < cfg.epochs; ++e)
    for (int64_t s = 0; s < plan.steps_per_epoch(); ++s, ++step) {
      Batch b = task.train->get(plan.slot(e, s, 0, 0));
      opt->zero_grad();
      torch::nn::functional::mse_loss(task.model->forward(b), b.y).backward();
      if (cfg.clip_grad_norm > 0) torch::nn::utils::clip_grad_norm_(params, cfg.clip_grad_norm);
      set_learning_rate(*opt, schedule.at(step));
      opt->step();
    }
  return flat_params(*task.model);
}

TEST(Equivalence, MatchesPlainLibTorchBigBatchLoop) {
  for (const auto& o : kOptimizers) {
    SCOPED_TRACE(o.name);
    const auto args = with(with(kRegression, o.args), {"--dtype", "float64"});
    const torch::Tensor ref = plain_libtorch_reference(args);
    for (const char* m : {"10", "3"})
      EXPECT_LE(rel_diff(run_vdp(with(args, {"--micro-batch", m})).params, ref), 1e-10) << "m=" << m;
  }
}

// The tolerance must be able to see the classic mistake: averaging each micro-batch and dividing
// by K. With m = 3 and B = 10 the micro-batches hold 3, 3, 2, 2 samples (and the last window 2, 1),
// so "mean / K" weights samples unequally. That run must land far outside the tolerance.
TEST(Equivalence, DividingByKInsteadOfTheCountIsDetected) {
  const auto args = with(with(kRegression, kOptimizers[0].args), {"--dtype", "float64", "--micro-batch", "3"});
  Config cfg = config_from(args);
  Task task = make_task(cfg);
  std::vector<torch::Tensor> params = task.model->parameters();
  auto fused = make_optimizer(cfg, params);
  torch::optim::Optimizer* opt = &fused->base();
  Plan plan({task.train->size(), cfg.global_batch, 1, cfg.micro_batch, cfg.seed, cfg.drop_last});
  LrSchedule schedule(cfg, plan.steps_per_epoch() * cfg.epochs);
  int64_t step = 0;
  for (int64_t e = 0; e < cfg.epochs; ++e)
    for (int64_t s = 0; s < plan.steps_per_epoch(); ++s, ++step) {
      opt->zero_grad();
      const int64_t k_s = plan.micro_steps(s);
      for (int64_t k = 0; k < k_s; ++k) {
        Batch b = task.train->get(plan.slot(e, s, k, 0));
        (torch::nn::functional::mse_loss(task.model->forward(b), b.y) / k_s).backward();
      }
      torch::nn::utils::clip_grad_norm_(params, cfg.clip_grad_norm);
      set_learning_rate(*opt, schedule.at(step));
      opt->step();
    }
  const auto ref = run_vdp(with(with(with(kRegression, kOptimizers[0].args), {"--dtype", "float64"}),
                                {"--micro-batch", "10"}));
  EXPECT_GT(rel_diff(flat_params(*task.model), ref.params), 1e-6);
}

TEST(Equivalence, ShortLastWindowKeepsEverySample) {
  // N = 103, B = 10, m = 4: the last step has 3 samples in one window; items must be 103 per epoch.
  Config cfg = config_from(with(kRegression, {"--micro-batch", "4"}));
  cfg.eval = false;
  Task task = make_task(cfg);
  Trainer trainer(cfg, task, std::make_shared<SelfCommunicator>());
  std::vector<int> seen(103, 0);
  double items = 0;
  trainer.on_slot([&](int64_t e, int64_t, int64_t, const std::vector<int64_t>& ids) {
    if (e == 0)
      for (int64_t i : ids) ++seen[i];
  });
  trainer.on_step([&](const StepRecord& r) {
    if (r.epoch == 0) items += r.items;
  });
  trainer.fit();
  for (int v : seen) EXPECT_EQ(v, 1);
  EXPECT_EQ(items, 103);
}

// --shuffle=false: the trainer takes the samples in file order (the slots it reports say so), and
// two epochs see the same order.
TEST(Trainer, ShuffleFalseTrainsInFileOrder) {
  Config cfg = testing::config_from({"--dataset", "regression", "--model", "mlp", "--samples", "23", "--global-batch",
                                     "6", "--micro-batch", "4", "--epochs", "2", "--shuffle=false"});
  cfg.quiet = true, cfg.eval = false;
  Trainer t(cfg, make_task(cfg), std::make_shared<SelfCommunicator>());
  std::vector<std::vector<int64_t>> seen(2);
  t.on_slot([&](int64_t epoch, int64_t, int64_t, const std::vector<int64_t>& ids) {
    seen[epoch].insert(seen[epoch].end(), ids.begin(), ids.end());
  });
  t.fit();
  std::vector<int64_t> order(23);
  for (int64_t i = 0; i < 23; ++i) order[i] = i;
  EXPECT_EQ(seen[0], order);
  EXPECT_EQ(seen[1], order);
}

}  // namespace
}  // namespace vdp
