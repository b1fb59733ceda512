#include "vdp/plan/plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "vdp/core/error.h"

namespace vdp {
namespace {

struct Case {
  int64_t n, b, w, m;
  bool drop_last;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  for (int64_t n : {1, 2, 7, 13, 64, 97, 100, 211})
    for (int64_t b : {1, 3, 8, 10, 32, 64, 250})
      for (int64_t w : {1, 2, 3, 4})
        for (int64_t m : {1, 2, 3, 5, 16, 300})
          for (bool dl : {false, true}) {
            if (!dl || n >= b) out.push_back({n, b, w, m, dl});
          }
  return out;
}

TEST(Plan, EverySampleExactlyOncePerEpoch) {
  for (const Case& c : cases()) {
    Plan plan({c.n, c.b, c.w, c.m, 42, c.drop_last});
    for (int64_t epoch : {0, 3}) {
      std::vector<int> seen(static_cast<size_t>(c.n), 0);
      for (int64_t s = 0; s < plan.steps_per_epoch(); ++s)
        for (int64_t k = 0; k < plan.micro_steps(s); ++k)
          for (int64_t r = 0; r < c.w; ++r)
            for (int64_t id : plan.slot(epoch, s, k, r)) {
              ASSERT_GE(id, 0);
              ASSERT_LT(id, c.n);
              ++seen[static_cast<size_t>(id)];
            }
      const int64_t expected_total = c.drop_last ? (c.n / c.b) * c.b : c.n;
      int64_t total = 0;
      for (int v : seen) {
        ASSERT_LE(v, 1) << "duplicated sample, N=" << c.n << " B=" << c.b << " W=" << c.w << " m=" << c.m;
        total += v;
      }
      ASSERT_EQ(total, expected_total) << "N=" << c.n << " B=" << c.b << " W=" << c.w << " m=" << c.m;
    }
  }
}

TEST(Plan, SlotsBalancedNeverAboveMicroBatchSameKOnEveryRank) {
  for (const Case& c : cases()) {
    Plan plan({c.n, c.b, c.w, c.m, 1, c.drop_last});
    for (int64_t s = 0; s < plan.steps_per_epoch(); ++s) {
      const int64_t bs = plan.step_samples(s);
      const int64_t k_s = plan.micro_steps(s);
      ASSERT_EQ(k_s, (bs + c.w * c.m - 1) / (c.w * c.m));
      int64_t lo = INT64_MAX, hi = 0, sum = 0;
      for (int64_t k = 0; k < k_s; ++k)
        for (int64_t r = 0; r < c.w; ++r) {
          const int64_t sz = plan.slot_range(s, k, r).size();
          lo = std::min(lo, sz), hi = std::max(hi, sz), sum += sz;
        }
      ASSERT_LE(hi, c.m);
      ASSERT_LE(hi - lo, 1);
      ASSERT_EQ(sum, bs);
      if (bs == c.b && c.b % (c.w * c.m) == 0) {
        ASSERT_EQ(lo, c.m) << "steady state must fill every slot";
      }
    }
  }
}

TEST(Plan, GlobalStreamIndependentOfWorldAndMicroBatch) {
  // The samples of each step, as a set, and their order in virtual-rank order, are fixed by
  // (N, B, seed, epoch) alone.
  const int64_t n = 211, b = 25;
  Plan ref({n, b, 1, b, 7, false});
  for (int64_t w : {1, 2, 3, 4})
    for (int64_t m : {1, 2, 4, 7, 25}) {
      Plan plan({n, b, w, m, 7, false});
      ASSERT_EQ(plan.steps_per_epoch(), ref.steps_per_epoch());
      for (int64_t s = 0; s < plan.steps_per_epoch(); ++s) {
        std::vector<int64_t> got;
        for (int64_t k = 0; k < plan.micro_steps(s); ++k)
          for (int64_t r = 0; r < w; ++r)
            for (int64_t id : plan.slot(2, s, k, r)) got.push_back(id);
        ASSERT_EQ(got, ref.slot(2, s, 0, 0)) << "W=" << w << " m=" << m << " step " << s;
      }
    }
}

TEST(Plan, PermutationDependsOnSeedAndEpochOnly) {
  auto a = epoch_permutation(1000, 5, 0);
  EXPECT_EQ(a, epoch_permutation(1000, 5, 0));
  EXPECT_NE(a, epoch_permutation(1000, 5, 1));
  EXPECT_NE(a, epoch_permutation(1000, 6, 0));
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(sorted[i], i);
}

TEST(Plan, ShortLastStepAndEmptySlots) {
  // N=10, B=4, W=3, m=2: steps of 4, 4, 2; the last step has K=1 and one empty slot.
  Plan plan({10, 4, 3, 2, 0, false});
  ASSERT_EQ(plan.steps_per_epoch(), 3);
  EXPECT_EQ(plan.step_samples(2), 2);
  EXPECT_EQ(plan.micro_steps(0), 1);
  EXPECT_EQ(plan.micro_steps(2), 1);
  EXPECT_EQ(plan.slot_range(2, 0, 0).size(), 1);
  EXPECT_EQ(plan.slot_range(2, 0, 1).size(), 1);
  EXPECT_EQ(plan.slot_range(2, 0, 2).size(), 0);
  Plan dropped({10, 4, 3, 2, 0, true});
  EXPECT_EQ(dropped.steps_per_epoch(), 2);
  EXPECT_NE(plan.summary().find("last step 2: B_s=2 K_s=1 slot sizes [k][r]: [1 1 0]"), std::string::npos)
      << plan.summary();
}

TEST(Plan, DatasetSmallerThanBatch) {
  Plan plan({5, 64, 2, 2, 0, false});
  ASSERT_EQ(plan.steps_per_epoch(), 1);
  EXPECT_EQ(plan.step_samples(0), 5);
  EXPECT_EQ(plan.micro_steps(0), 2);
  EXPECT_THROW(Plan({5, 64, 2, 2, 0, true}), UserError);
}

}  // namespace
}  // namespace vdp
