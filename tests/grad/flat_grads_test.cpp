// Note [exact window totals] (src/grad/flat_grads.cpp): the window's loss sum and item count are
// exact whatever the model's dtype and beyond 2^24 items. With the totals held in the gradient
// buffer's dtype, a bfloat16 model rounds a count of 1001 to 1000 and a float32 one loses
// 2^24 + 1 (these tests fail on such code).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "vdp/grad/flat_grads.h"
#include "vdp/grad/reducer.h"
#include "../train/train_test_util.h"

namespace vdp {
namespace {

LossSum loss_of(double sum, double count, torch::ScalarType dt) {
  return {torch::tensor(sum, torch::kDouble).to(dt), torch::tensor(count, torch::kDouble).to(torch::kFloat)};
}

TEST(FlatGradsTotals, BFloat16ModelCountsAreExact) {
  std::vector<torch::Tensor> params{torch::zeros({7}, torch::kBFloat16).requires_grad_(true)};
  FlatGrads flat(params, {"w"});
  EXPECT_EQ(flat.scalars().scalar_type(), torch::kFloat) << "a bfloat16 model needs a float32 scalar region";
  EXPECT_EQ(flat.buffers().size(), 2u);
  flat.zero();
  // Counts that are not multiples of 256 (bfloat16 keeps 8 significant bits).
  for (double c : {333.0, 257.0, 411.0}) flat.add_loss(loss_of(0.5 * c, c, torch::kFloat));
  flat.stage_loss();
  const testing::Totals t = testing::totals_of(flat);
  EXPECT_EQ(t.count, 1001.0);
  EXPECT_NEAR(t.loss_sum, 500.5, 1e-9);
}

TEST(FlatGradsTotals, Float32CountsBeyond2To24AreExact) {
  std::vector<torch::Tensor> params{torch::zeros({3}).requires_grad_(true)};
  FlatGrads flat(params, {"w"});
  flat.zero();
  // Token counts of long-sequence micro-batches: 2^24 + 1 and more in one window.
  flat.add_loss(loss_of(1.0, 16777216.0, torch::kFloat));
  flat.add_loss(loss_of(2.0, 1.0, torch::kFloat));
  flat.add_loss(loss_of(3.0, 9999998.0, torch::kFloat));  // each micro-step's count is exact in float32
  flat.stage_loss();
  const testing::Totals t = testing::totals_of(flat);
  EXPECT_EQ(t.count, 16777217.0 + 9999998.0);
  EXPECT_NEAR(t.loss_sum, 6.0, 1e-6);
  // The scalar region travels with the gradients: 3 + 5 elements, one buffer.
  EXPECT_EQ(flat.buffers().size(), 1u);
  EXPECT_EQ(flat.buffers()[0].numel(), 3 + 5);
}

// A window holds exactly its own gradient sums: later gradients are added to the first, and
// parameters no gradient reached are zero, not left holding the previous window's values.
TEST(FlatGradsWindow, WindowsHoldTheirOwnSumsUnreachedAreZero) {
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble);
  torch::Tensor a = torch::zeros({3}, f64).requires_grad_(true), b = torch::zeros({2}, f64).requires_grad_(true);
  FlatGrads flat({a, b}, {"a", "b"});
  const torch::Tensor x = torch::tensor({1.5, -2.0, 3.0}, f64), y = torch::tensor({4.0, 5.0}, f64);
  const torch::Tensor x2 = torch::tensor({0.25, 0.5, -1.0}, f64), z = torch::tensor({7.0, 8.0, 9.0}, f64);

  // Window 1: two micro-steps, b reached in the first only.
  flat.begin_window();
  ((a * x).sum() + (b * y).sum()).backward();
  (a * x2).sum().backward();
  EXPECT_TRUE(torch::equal(a.grad(), x + x2));
  EXPECT_TRUE(torch::equal(b.grad(), y));

  // Window 2: b unused; a's gradient replaces window 1's sum.
  flat.begin_window();
  (a * z).sum().backward();
  EXPECT_TRUE(torch::equal(a.grad(), z));
  EXPECT_TRUE(torch::equal(b.grad(), torch::zeros({2}, f64)));
  // Still views of the buffer, laid out in reverse order: [b, a, scalars].
  EXPECT_NO_THROW(flat.check_views());
  EXPECT_TRUE(torch::equal(flat.buffers()[0].narrow(0, 0, 5), torch::cat({torch::zeros({2}, f64), z})));

  // Window 3: a unused, b reached twice.
  flat.begin_window();
  (b * y).sum().backward();
  (b * y).sum().backward();
  EXPECT_TRUE(torch::equal(a.grad(), torch::zeros({3}, f64)));
  EXPECT_TRUE(torch::equal(b.grad(), 2 * y));
}

// A parameter used twice in one backward gets one gradient (autograd sums the two uses first), and
// a window on one rank with no micro-step at all (every slot empty) leaves zeros.
TEST(FlatGradsWindow, TwoUsesInOneBackwardAndAnEmptyWindow) {
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble);
  torch::Tensor a = torch::zeros({2}, f64).requires_grad_(true);
  FlatGrads flat({a}, {"a"});
  const torch::Tensor x = torch::tensor({1.0, 2.0}, f64), y = torch::tensor({10.0, 20.0}, f64);
  flat.begin_window();
  ((a * x).sum() + (a * y).sum()).backward();
  EXPECT_TRUE(torch::equal(a.grad(), x + y));
  flat.begin_window();
  EXPECT_TRUE(torch::equal(a.grad(), torch::zeros({2}, f64)));
}

}  // namespace
}  // namespace vdp
