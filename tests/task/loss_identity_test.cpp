// The identity of the background documents, for losses that average over the batch:
//   f(x, y) = (i/b)·f(x[:i], y[:i]) + (1 − i/b)·f(x[i:], y[i:])
// checked against torch's own mean-reduced losses, and the (sum, count) form vdp uses.
#include <gtest/gtest.h>

#include "vdp/core/error.h"

#include <ATen/ATen.h>
#include <torch/nn/functional/loss.h>

#include <functional>

#include "vdp/task/loss.h"

namespace vdp {
namespace {

namespace F = torch::nn::functional;

using MeanLoss = std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>;

void check_identity(const torch::Tensor& x, const torch::Tensor& y, const MeanLoss& f) {
  const int64_t b = x.size(0);
  const double whole = f(x, y).item<double>();
  for (int64_t i = 1; i < b; ++i) {
    const double a = static_cast<double>(i) / b;
    const double split = a * f(x.narrow(0, 0, i), y.narrow(0, 0, i)).item<double>() +
                         (1 - a) * f(x.narrow(0, i, b - i), y.narrow(0, i, b - i)).item<double>();
    ASSERT_NEAR(split, whole, 1e-12 * std::abs(whole)) << "split at " << i;
    // The naive sum of the two means is not the mean (the pitfall of the background documents).
    const double naive = f(x.narrow(0, 0, i), y.narrow(0, 0, i)).item<double>() +
                         f(x.narrow(0, i, b - i), y.narrow(0, i, b - i)).item<double>();
    ASSERT_GT(std::abs(naive - whole), 1e-3 * std::abs(whole));
  }
}

TEST(LossIdentity, BinaryCrossEntropy) {
  torch::manual_seed(0);
  auto x = torch::rand({10, 5}, torch::kFloat64) * 0.98 + 0.01;
  auto y = torch::randint(0, 2, {10, 5}, torch::kFloat64);
  check_identity(x, y, [](const torch::Tensor& a, const torch::Tensor& b) -> torch::Tensor { return F::binary_cross_entropy(a, b); });
  check_identity(x, y, [](const torch::Tensor& a, const torch::Tensor& b) -> torch::Tensor {
    LossSum s = bce_sum(a, Batch{a, b, {}});
    return s.sum / s.count;
  });
  Batch whole{x, y, {}};
  EXPECT_NEAR((bce_sum(x, whole).sum / bce_sum(x, whole).count).item<double>(),
              F::binary_cross_entropy(x, y).item<double>(), 1e-14);
}

TEST(LossIdentity, CrossEntropy) {
  torch::manual_seed(1);
  auto x = torch::randn({9, 7}, torch::kFloat64);
  auto y = torch::randint(0, 7, {9}, torch::kInt64);
  check_identity(x, y, [](const torch::Tensor& a, const torch::Tensor& b) -> torch::Tensor { return F::cross_entropy(a, b); });
  LossSum s = cross_entropy_sum(x, Batch{x, y, {}});
  EXPECT_NEAR((s.sum / s.count).item<double>(), F::cross_entropy(x, y).item<double>(), 1e-14);
}

TEST(LossIdentity, MeanSquaredError) {
  torch::manual_seed(2);
  auto x = torch::randn({8, 4}, torch::kFloat64);
  auto y = torch::randn({8, 4}, torch::kFloat64);
  check_identity(x, y, [](const torch::Tensor& a, const torch::Tensor& b) -> torch::Tensor { return F::mse_loss(a, b); });
  LossSum s = mse_sum(x, Batch{x, y, {}});
  EXPECT_NEAR((s.sum / s.count).item<double>(), F::mse_loss(x, y).item<double>(), 1e-14);
}

TEST(LossIdentity, TokenLossCountsRealTokensOnly) {
  torch::manual_seed(3);
  auto logits = torch::randn({3, 5, 6}, torch::kFloat64);
  auto y = torch::randint(0, 6, {3, 5}, torch::kInt64);
  auto mask = torch::tensor({1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1}, torch::kUInt8).view({3, 5});
  LossSum s = token_cross_entropy_sum(logits, Batch{logits, y, mask});
  EXPECT_EQ(s.count.item<double>(), 9.0);
  auto sel = mask.flatten().to(torch::kBool);
  auto ref = F::cross_entropy(logits.flatten(0, 1).index({sel}), y.flatten().index({sel}),
                              F::CrossEntropyFuncOptions().reduction(torch::kSum));
  EXPECT_NEAR(s.sum.item<double>(), ref.item<double>(), 1e-12);
}

// No loss broadcasts: a [n] target meets a single-output [n, 1] prediction as [n, 1] (the old code
// computed [n, n] differences here), and every other mismatch is refused with one line.
TEST(LossShapes, NoBroadcastingOneRuleForSingleOutputs) {
  torch::manual_seed(4);
  auto pred = torch::randn({5, 1}, torch::kFloat64);
  auto y = torch::randn({5}, torch::kFloat64);
  const LossSum flat = mse_sum(pred, Batch{pred, y, {}});
  const LossSum col = mse_sum(pred, Batch{pred, y.unsqueeze(1), {}});
  EXPECT_EQ(flat.sum.item<double>(), col.sum.item<double>());
  EXPECT_NEAR(flat.sum.item<double>(), (pred.squeeze(1) - y).pow(2).sum().item<double>(), 1e-12);
  EXPECT_THROW(mse_sum(pred.squeeze(1), Batch{pred, y.unsqueeze(1), {}}), UserError);  // [n] vs [n, 1]
  EXPECT_THROW(mse_sum(pred.squeeze(1).sum(), Batch{pred, y.unsqueeze(1), {}}), UserError);  // a scalar
  EXPECT_THROW(mse_sum(torch::randn({5, 3}, torch::kFloat64), Batch{pred, torch::randn({5, 2}), {}}), UserError);
  auto probs = torch::rand({5, 1}, torch::kFloat64);
  EXPECT_THROW(bce_sum(probs, Batch{probs, torch::rand({5, 2}, torch::kFloat64), {}}), UserError);
  EXPECT_NO_THROW(bce_sum(probs, Batch{probs, torch::rand({5}, torch::kFloat64).round(), {}}));
  EXPECT_THROW(cross_entropy_sum(torch::randn({5, 3}), Batch{pred, torch::randint(0, 3, {5, 1}), {}}), UserError);
  EXPECT_THROW(token_cross_entropy_sum(torch::randn({2, 4, 3}), Batch{torch::zeros({2, 4}), torch::randint(0, 3, {2, 5}), {}}),
               UserError);
}

}  // namespace
}  // namespace vdp
