// SyncBatchNorm in one process, conversion from BatchNorm, and the per-window momentum.
#include "vdp/nn/sync_batchnorm.h"

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>
#include <torch/nn/modules/activation.h>

#include <cmath>

#include "vdp/core/error.h"
#include "vdp/nn/models.h"

namespace vdp {
namespace {

std::map<std::string, torch::Tensor> state(const torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : m.named_parameters()) out[p.key()] = p.value().detach().clone();
  for (const auto& b : m.named_buffers()) out[b.key()] = b.value().detach().clone();
  return out;
}

// A user's CNN built the way convert_sync_batchnorm supports: BatchNorm layers in a Sequential, run
// through it (a model that keeps a layer in its own member holder, like the built-in ones, is built
// with vdp::SyncBatchNorm directly instead).
class SequentialCnn : public Net {
 public:
  SequentialCnn() {
    namespace nn = torch::nn;
    body_ = register_module(
        "body", nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 8, 3).padding(1).bias(false)), nn::BatchNorm2d(8),
                               nn::ReLU(), nn::MaxPool2d(nn::MaxPool2dOptions(2)),
                               nn::Conv2d(nn::Conv2dOptions(8, 16, 3).padding(1).bias(false)), nn::BatchNorm2d(16),
                               nn::ReLU(), nn::MaxPool2d(nn::MaxPool2dOptions(2)), nn::Flatten(),
                               nn::Linear(16 * 7 * 7, 10)));
  }
  torch::Tensor forward(const Batch& b) override { return body_->forward(b.x); }

 private:
  torch::nn::Sequential body_{nullptr};
};

TEST(SyncBatchNormUnit, ConversionKeepsParametersAndBuffersAndChangesOnlyStatistics) {
  torch::manual_seed(3);
  std::shared_ptr<Net> model = std::make_shared<SequentialCnn>();
  torch::manual_seed(4);
  auto x = torch::randn({6, 1, 28, 28});
  model->train();
  model->forward(Batch{x, {}, {}});  // move the running statistics away from their initial values
  const auto before = state(*model);

  torch::manual_seed(5);
  auto x2 = torch::randn({5, 1, 28, 28});
  torch::NoGradGuard no_grad;
  model->eval();
  const torch::Tensor eval_before = model->forward(Batch{x2, {}, {}});
  model->train();
  const torch::Tensor train_before = model->forward(Batch{x2, {}, {}});

  auto converted = convert_sync_batchnorm(model);
  ASSERT_EQ(converted, model) << "the model object itself is converted in place";
  int sync = 0;
  for (const auto& m : model->modules()) sync += std::dynamic_pointer_cast<SyncBatchNormImpl>(m) != nullptr;
  int plain = 0;
  for (const auto& m : model->modules()) plain += std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(m) != nullptr;
  EXPECT_EQ(sync, 2);
  EXPECT_EQ(plain, 0);

  // Same names, same values (the train forward above moved the statistics once more: restore).
  const auto after = state(*model);
  ASSERT_EQ(after.size(), before.size());
  for (const auto& [name, t] : before) ASSERT_TRUE(after.count(name)) << name;
  for (const auto& p : model->named_parameters()) EXPECT_TRUE(torch::equal(p.value(), before.at(p.key()))) << p.key();
  for (const auto& b : model->named_buffers()) b.value().copy_(before.at(b.key()));

  // Eval mode: running statistics, identical result. Train mode in one process: the batch's own
  // statistics, identical up to rounding (the only difference is how statistics are computed).
  model->eval();
  EXPECT_TRUE(torch::allclose(model->forward(Batch{x2, {}, {}}), eval_before, 1e-6, 1e-6));
  model->train();
  EXPECT_TRUE(torch::allclose(model->forward(Batch{x2, {}, {}}), train_before, 1e-4, 1e-5));
}

TEST(SyncBatchNormUnit, WindowMomentumMakesKForwardsDecayLikeOneStep) {
  EXPECT_DOUBLE_EQ(window_momentum(0.1, 1), 0.1);
  const double m = 0.1;
  for (int64_t k : {2, 4, 16}) {
    const double mk = window_momentum(m, k);
    EXPECT_NEAR(std::pow(1 - mk, static_cast<double>(k)), 1 - m, 1e-12);
    // K forwards of the same batch move the running mean exactly as one forward with momentum m.
    torch::nn::BatchNorm1d bn(torch::nn::BatchNormOptions(3).momentum(m));
    bn->to(torch::kFloat64);
    WindowMomentum wm(*bn);
    wm.set_micro_steps(k);
    auto x = torch::randn({8, 3}, torch::kFloat64) + 2;
    for (int64_t i = 0; i < k; ++i) bn->forward(x);
    const auto expected = m * x.mean(0);  // from 0: (1 - m) * 0 + m * mean
    EXPECT_TRUE(torch::allclose(bn->running_mean, expected, 1e-12, 1e-12)) << "K=" << k;
    wm.set_micro_steps(1);
    EXPECT_DOUBLE_EQ(*bn->options.momentum(), m);
  }
}

TEST(SyncBatchNormUnit, WithoutCommunicatorIsBatchNorm) {
  torch::manual_seed(0);
  auto x = torch::randn({7, 4, 3, 3}, torch::kFloat64);
  torch::nn::BatchNorm2d bn(4);
  bn->to(torch::kFloat64);
  SyncBatchNorm sync(torch::nn::BatchNormOptions(4), 2);
  sync->to(torch::kFloat64);
  EXPECT_TRUE(torch::allclose(sync->forward(x), bn->forward(x), 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(sync->running_var, bn->running_var, 1e-12, 1e-12));
  EXPECT_THROW(sync->forward(torch::randn({2, 4})), UserError);
}

// Note [SyncBatchNorm precision]: a micro-batch with 2 * 300 * 300 = 180000 values per channel,
// above float16's largest finite value (65504) and far beyond bfloat16's 8 significant bits. The
// layer must match the float32 layer run on the same (rounded) input: statistics and gradients to
// float32 rounding, the output to its own dtype's. With statistics kept in the input's dtype the
// float16 count overflows (NaN output) and bfloat16 rounds the sums (errors of ~1e-3).
TEST(SyncBatchNormUnit, LowPrecisionInputsKeepFloat32Statistics) {
  for (auto dtype : {torch::kBFloat16, torch::kHalf}) {
    torch::manual_seed(9);
    const torch::Tensor x = (torch::randn({2, 3, 300, 300}) * 2 + 1).to(dtype);
    const torch::Tensor dy = torch::randn({2, 3, 300, 300}).to(dtype);
    auto opts = torch::nn::BatchNormOptions(3).momentum(0.1);
    SyncBatchNorm low(opts, 2), ref(opts, 2);  // no communicator: one rank
    {
      torch::NoGradGuard ng;
      low->weight.copy_(torch::tensor({0.5, 1.5, -1.0}));
      ref->weight.copy_(low->weight);
    }
    const torch::Tensor xl = x.clone().requires_grad_(true), xr = x.to(torch::kFloat).requires_grad_(true);
    const torch::Tensor yl = low->forward(xl), yr = ref->forward(xr);
    (yl.to(torch::kFloat) * dy.to(torch::kFloat)).sum().backward();
    (yr * dy.to(torch::kFloat)).sum().backward();
    const char* name = dtype == torch::kHalf ? "float16" : "bfloat16";
    EXPECT_EQ(yl.scalar_type(), dtype);
    EXPECT_TRUE(torch::isfinite(yl).all().item<bool>()) << name;
    auto rel = [](const torch::Tensor& a, const torch::Tensor& b) {
      return ((a.to(torch::kFloat) - b).norm() / b.norm()).item<double>();
    };
    const double out_tol = dtype == torch::kHalf ? 2e-3 : 1e-2;  // the output's own rounding
    EXPECT_LE(rel(yl, yr), out_tol) << name;
    EXPECT_LE(rel(low->running_mean, ref->running_mean), 1e-5) << name;
    EXPECT_LE(rel(low->running_var, ref->running_var), 1e-5) << name;
    EXPECT_LE(rel(low->weight.grad(), ref->weight.grad()), 1e-4) << name;
    EXPECT_LE(rel(low->bias.grad(), ref->bias.grad()), 1e-4) << name;
    EXPECT_LE(rel(xl.grad(), xr.grad()), out_tol) << name;
  }
}

}  // namespace
}  // namespace vdp
