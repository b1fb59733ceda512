// The window read one late (Note [window read one late] in src/train/window.cpp): a window's
// figures reach the host after the next window's micro-steps are enqueued, every step is still
// reported once, in order, with its exact figures, and a stop vote ends the run one window later on
// every rank alike.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <string>
#include <vector>

#include "train_test_util.h"

namespace vdp {
namespace {

// N = 103, B = 10, m = 4: 11 steps per epoch of K = 3 (the last: 3 samples, K = 1).
const std::vector<std::string> kArgs = {"--dataset", "regression", "--model", "mlp", "--samples", "103",
                                        "--global-batch", "10", "--micro-batch", "4", "--epochs", "2",
                                        "--hidden", "16", "--optimizer", "adam", "--lr", "0.01"};

TEST(WindowRead, StepsAreReportedOneWindowLateOnceAndInOrder) {
  Config cfg = testing::config_from(kArgs);
  cfg.quiet = true, cfg.eval = false;
  Trainer t(cfg, make_task(cfg), std::make_shared<SelfCommunicator>());
  std::vector<std::string> events;
  std::vector<StepRecord> steps;
  t.on_slot([&](int64_t e, int64_t s, int64_t k, const std::vector<int64_t>&) {
    events.push_back("slot " + std::to_string(e * 11 + s) + "." + std::to_string(k));
  });
  t.on_step([&](const StepRecord& r) {
    events.push_back("step " + std::to_string(r.step));
    steps.push_back(r);
  });
  const TrainResult res = t.fit();
  ASSERT_EQ(res.steps, 22);
  ASSERT_EQ(steps.size(), 22u);
  double items = 0;
  for (size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(steps[i].step, static_cast<int64_t>(i));
    EXPECT_EQ(steps[i].items, steps[i].samples) << "step " << i;  // one loss item per sample
    EXPECT_TRUE(std::isfinite(steps[i].loss) && std::isfinite(steps[i].grad_norm)) << "step " << i;
    items += steps[i].items;
  }
  EXPECT_EQ(items, 2 * 103);
  EXPECT_EQ(res.last_loss, steps.back().loss);
  // Step s is reported after the last micro-step of window s + 1 was enqueued, except the last
  // step of an epoch, which the epoch's end reads at once.
  auto at = [&](const std::string& e) { return std::find(events.begin(), events.end(), e) - events.begin(); };
  for (int64_t s = 0; s < 22; ++s) {
    SCOPED_TRACE("step " + std::to_string(s));
    const auto reported = at("step " + std::to_string(s));
    ASSERT_LT(reported, static_cast<long>(events.size()));
    EXPECT_GT(reported, at("slot " + std::to_string(s) + ".0"));
    if (s % 11 == 10) {
      if (s + 1 < 22) {
        EXPECT_LT(reported, at("slot " + std::to_string(s + 1) + ".0"));
      }
    } else {
      const int64_t next_k = (s + 1) % 11 == 10 ? 0 : 2;  // the epoch's short last window has K = 1
      EXPECT_GT(reported, at("slot " + std::to_string(s + 1) + "." + std::to_string(next_k)));
    }
  }
}

TEST(WindowRead, AStopVoteEndsTheRunAfterTheNextWindow) {
  Config cfg = testing::config_from(kArgs);
  cfg.quiet = true, cfg.eval = false;
  Trainer t(cfg, make_task(cfg), std::make_shared<SelfCommunicator>());
  // The stop request arrives during window 3: window 3 carries the vote, window 4 runs while the
  // host reads it, and the run stops after window 4 (5 steps taken).
  int signal = 0;
  t.stop_on([&] { return signal; });
  t.on_slot([&](int64_t, int64_t s, int64_t k, const std::vector<int64_t>&) {
    if (s == 3 && k == 1) signal = SIGTERM;
  });
  std::vector<int64_t> reported;
  t.on_step([&](const StepRecord& r) { reported.push_back(r.step); });
  const TrainResult res = t.fit();
  EXPECT_TRUE(res.stopped);
  EXPECT_EQ(res.stop_signal, SIGTERM);
  EXPECT_EQ(res.steps, 5);
  EXPECT_EQ(reported, (std::vector<int64_t>{0, 1, 2, 3, 4}));
}

}  // namespace
}  // namespace vdp
