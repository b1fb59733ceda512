// An overflow injected in one micro-step of one rank: every rank skips the step (the decision is
// made on the reduced gradients, with no extra collective), the scale backs off, parameters and
// optimizer state stay bit-identical, and the scale grows again after the growth interval.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <limits>

#include "../train/train_test_util.h"
#include "vdp/amp/grad_scaler.h"
#include "vdp/dist/factory.h"
#include "vdp/dist/mpi_env.h"
#include "vdp/optim/optim.h"

namespace vdp {
namespace {

TEST(AmpOverflow, EveryRankSkipsBacksOffAndGrows) {
  auto comm = testing::world();
  const int w = comm->size();
  Config cfg = testing::config_from({"--dataset", "regression", "--model", "mlp", "--samples", "400",
                                     "--global-batch", std::to_string(8 * w), "--micro-batch", "4", "--epochs", "1",
                                     "--optimizer", "adam", "--lr", "0.01", "--precision", "bf16", "--grad-scaler",
                                     "on", "--scaler-init", "1024", "--scaler-growth-interval", "3", "--max-steps",
                                     "8"});
  cfg.quiet = true, cfg.eval = false;
  Trainer t(cfg, make_task(cfg), comm);
  const int bad_rank = w - 1;
  const int64_t bad_step = 2;
  t.on_loss([&](const StepRecord& win, int64_t k, const Batch&, LossSum& loss) {
    if (win.step == bad_step && k == 1 && comm->rank() == bad_rank)
      loss.sum = loss.sum * std::numeric_limits<double>::infinity();
  });
  torch::Tensor params_before;
  NamedTensors opt_before;
  std::vector<StepRecord> steps;
  t.on_step([&](const StepRecord& r) {
    steps.push_back(r);
    if (r.step == bad_step - 1) {
      params_before = testing::flat_params(t.model());
      opt_before = optimizer_state(t.optimizer(), t.parameters());
    }
    if (r.step == bad_step) {
      EXPECT_TRUE(r.skipped) << "rank " << comm->rank();
      EXPECT_TRUE(torch::equal(testing::flat_params(t.model()), params_before)) << "parameters changed";
      NamedTensors opt_after = optimizer_state(t.optimizer(), t.parameters());
      ASSERT_EQ(opt_after.size(), opt_before.size());
      for (size_t i = 0; i < opt_after.size(); ++i)
        EXPECT_TRUE(torch::equal(opt_after[i].second, opt_before[i].second)) << opt_after[i].first;
    }
  });
  t.fit();
  ASSERT_EQ(steps.size(), 8u);
  for (const auto& s : steps) EXPECT_EQ(s.skipped, s.step == bad_step) << "step " << s.step;
  // Scale per window: 1024 for steps 0-2; backed off to 512 after the skip; 3 good steps (3, 4, 5)
  // later it grows to 1024 for step 6 onwards.
  const std::vector<double> expected = {1024, 1024, 1024, 512, 512, 512, 1024, 1024};
  for (size_t i = 0; i < steps.size(); ++i) EXPECT_EQ(steps[i].scale, expected[i]) << "step " << i;
  EXPECT_EQ(t.skipped_steps(), 1);
  // Ranks agree: the final parameters are identical everywhere.
  const auto [sum, l2] = parameter_checksum(t.model());
  const auto ref = comm->broadcast_host({sum, l2}, 0);
  EXPECT_EQ(ref[0], sum);
  EXPECT_EQ(ref[1], l2);
}

}  // namespace
}  // namespace vdp
