// Note [exact window totals] (src/grad/flat_grads.cpp): the window's loss sum and item count are
// exact whatever the model's dtype and beyond 2^24 items. With the totals held in the gradient
// buffer's dtype, a bfloat16 model rounds a count of 1001 to 1000 and a float32 one loses
// 2^24 + 1 (these tests fail on such code).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "vdp/grad/flat_grads.h"
#include "vdp/grad/reducer.h"

namespace vdp {
namespace {

LossSum loss_of(double sum, double count, torch::ScalarType dt) {
  return {torch::tensor(sum, torch::kDouble).to(dt), torch::tensor(count, torch::kDouble).to(torch::kFloat)};
}

TEST(FlatGradsTotals, BFloat16ModelCountsAreExact) {
  std::vector<torch::Tensor> params{torch::zeros({7}, torch::kBFloat16).requires_grad_(true)};
  FlatGrads flat(params, {"w"});
  EXPECT_EQ(flat.tail().scalar_type(), torch::kFloat) << "a bfloat16 model needs a float32 tail";
  EXPECT_EQ(flat.buffers().size(), 2u);
  flat.zero();
  // Counts that are not multiples of 256 (bfloat16 keeps 8 significant bits).
  for (double c : {333.0, 257.0, 411.0}) flat.add_loss(loss_of(0.5 * c, c, torch::kFloat));
  flat.stage_loss();
  const WindowTotals t = flat.totals();
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
  const WindowTotals t = flat.totals();
  EXPECT_EQ(t.count, 16777217.0 + 9999998.0);
  EXPECT_NEAR(t.loss_sum, 6.0, 1e-6);
  // The tail travels with the gradients: 3 + 5 elements, one buffer.
  EXPECT_EQ(flat.buffers().size(), 1u);
  EXPECT_EQ(flat.buffers()[0].numel(), 3 + 5);
}

}  // namespace
}  // namespace vdp
