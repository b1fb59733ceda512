// Activation recomputation (nn/recompute.h): the built-in models' gradients with --recompute are the
// same bits as without it, in float32 and float64; random numbers drawn inside a block are drawn
// again in backward and the generator continues as if they were drawn once; autocast is restored
// for the second run; the peak memory of a deep gpt's micro-step drops.
#include "vdp/nn/recompute.h"

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/nn/modules/linear.h>

#include <map>
#include <string>

#include "vdp/amp/autocast.h"
#include "vdp/device/memory.h"
#include "vdp/nn/gpt.h"
#include "vdp/nn/models.h"

namespace vdp {
namespace {

struct Grads {
  double loss = 0;
  std::map<std::string, torch::Tensor> grads;
};

// One forward and backward of `net` on `batch` (cross-entropy over the last dimension), with or
// without recomputation, from zeroed gradients.
Grads step(Net& net, const Batch& batch, bool recompute, const torch::Tensor& target) {
  net.set_recompute(recompute);
  for (auto& p : net.parameters()) p.mutable_grad() = torch::Tensor();
  auto out = net.forward(batch);
  auto loss = torch::cross_entropy_loss(out.reshape({-1, out.size(-1)}), target.reshape({-1}));
  loss.backward();
  Grads g;
  g.loss = loss.item<double>();
  for (const auto& p : net.named_parameters()) {
    EXPECT_TRUE(p.value().grad().defined()) << p.key() << " got no gradient";
    g.grads[p.key()] = p.value().grad().clone();
  }
  return g;
}

void expect_same_bits(Net& net, const Batch& batch, const torch::Tensor& target) {
  const Grads plain = step(net, batch, false, target);
  const Grads again = step(net, batch, true, target);
  EXPECT_EQ(plain.loss, again.loss);
  ASSERT_EQ(plain.grads.size(), again.grads.size());
  for (const auto& [name, g] : plain.grads) {
    ASSERT_TRUE(again.grads.at(name).defined()) << name;
    EXPECT_TRUE(torch::equal(g, again.grads.at(name))) << name << ": max difference "
                                                       << (g - again.grads.at(name)).abs().max().item<double>();
  }
}

class Recompute : public ::testing::TestWithParam<torch::ScalarType> {};

TEST_P(Recompute, GptSameBits) {
  torch::manual_seed(1);
  Gpt gpt(GptShape{50, 16, 3, 4, 32});
  set_float_dtype(gpt, GetParam());
  Batch b;
  b.x = torch::randint(0, 50, {4, 16}, torch::kInt64);
  expect_same_bits(gpt, b, torch::randint(0, 50, {4, 16}, torch::kInt64));
}

TEST_P(Recompute, Resnet18SameBits) {
  torch::manual_seed(2);
  ResNet18 net(3, 10, NormKind::Group, false);
  set_float_dtype(net, GetParam());
  Batch b;
  b.x = torch::randn({3, 3, 16, 16}).to(GetParam());
  expect_same_bits(net, b, torch::randint(0, 10, {3}, torch::kInt64));
}

TEST_P(Recompute, MlpSameBits) {
  // The input requires no gradient: the layers' parameters still get theirs through the node.
  torch::manual_seed(3);
  Mlp net(20, 32, 5);
  set_float_dtype(net, GetParam());
  Batch b;
  b.x = torch::randn({6, 20}).to(GetParam());
  expect_same_bits(net, b, torch::randint(0, 5, {6}, torch::kInt64));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, Recompute, ::testing::Values(torch::kFloat32, torch::kFloat64),
                         [](const auto& info) { return std::string(c10::toString(info.param)); });

// A block with dropout: the second run must draw the first run's mask, and the generator must then
// be where one run left it.
TEST(RecomputeRandom, DropoutSameMaskAndGeneratorContinues) {
  torch::manual_seed(4);
  torch::nn::Linear fc(8, 8);
  const auto x = torch::randn({5, 8}, torch::kFloat64).requires_grad_(true);
  fc->to(torch::kFloat64);
  auto block = [&](const torch::Tensor& in) { return torch::dropout(torch::tanh(fc->forward(in)), 0.5, true); };
  auto run = [&](bool recompute) {
    fc->zero_grad();
    x.mutable_grad() = torch::Tensor();
    torch::manual_seed(5);
    auto y = recompute ? checkpoint(*fc, block, x) : block(x);
    y.pow(2).sum().backward();
    const auto next = torch::rand({3}, torch::kFloat64);  // the generator after forward and backward
    return std::vector<torch::Tensor>{fc->weight.grad().clone(), fc->bias.grad().clone(), x.grad().clone(), next};
  };
  const auto plain = run(false), again = run(true);
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_TRUE(torch::equal(plain[i], again[i])) << "item " << i;
  // The test can fail: a block that drew fresh numbers in its second run would differ.
  EXPECT_GT(plain[0].abs().sum().item<double>(), 0.0);
}

// Backward runs outside the autocast guard (as the trainer's does): the second run must still be
// under bf16 autocast, or its gradients would be float32 arithmetic and differ.
TEST(RecomputeAutocast, Bf16OnCpuSameBits) {
  torch::manual_seed(6);
  Gpt gpt(GptShape{40, 8, 2, 2, 16});
  Batch b;
  b.x = torch::randint(0, 40, {3, 8}, torch::kInt64);
  const auto target = torch::randint(0, 40, {3, 8}, torch::kInt64);
  auto run = [&](bool recompute) {
    gpt.set_recompute(recompute);
    gpt.zero_grad();
    torch::Tensor out;
    {
      AutocastGuard autocast(torch::kCPU, Precision::Bf16);
      out = gpt.forward(b);
    }
    torch::cross_entropy_loss(out.reshape({-1, 40}).to(torch::kFloat32), target.reshape({-1})).backward();
    std::vector<torch::Tensor> g;
    for (auto& p : gpt.parameters()) g.push_back(p.grad().clone());
    return g;
  };
  const auto plain = run(false), again = run(true);
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_TRUE(torch::equal(plain[i], again[i])) << "parameter " << i;
}

TEST(RecomputeAutocast, EvaluationRunsPlainly) {
  torch::manual_seed(7);
  Mlp net(4, 8, 2);
  net.set_recompute(true);
  torch::NoGradGuard no_grad;
  Batch b;
  b.x = torch::randn({2, 4});
  EXPECT_FALSE(net.forward(b).requires_grad());
}

// The point of it: a 6-layer gpt's micro-step holds far less at its peak. Measured by the counting
// CPU allocator (device/memory.h) over forward and backward, above what was live before.
TEST(RecomputeMemory, DeepGptPeakDrops) {
  const torch::Device cpu(torch::kCPU);
  torch::manual_seed(8);
  Gpt gpt(GptShape{64, 128, 6, 4, 64});
  Batch b;
  b.x = torch::randint(0, 64, {8, 128}, torch::kInt64);
  const auto target = torch::randint(0, 64, {8, 128}, torch::kInt64);
  auto peak = [&](bool recompute) {
    gpt.set_recompute(recompute);
    gpt.zero_grad();
    for (auto& p : gpt.parameters()) p.mutable_grad() = torch::zeros_like(p);  // gradients live before
    const int64_t before = live_memory(cpu);
    reset_peak_memory(cpu);
    auto out = gpt.forward(b);
    torch::cross_entropy_loss(out.reshape({-1, 64}), target.reshape({-1})).backward();
    return peak_memory(cpu) - before;
  };
  const int64_t plain = peak(false), recomputed = peak(true);
  RecordProperty("peak_plain", std::to_string(plain));
  RecordProperty("peak_recompute", std::to_string(recomputed));
  EXPECT_GT(plain, 0);
  EXPECT_LT(static_cast<double>(recomputed), 0.6 * static_cast<double>(plain))
      << "plain " << plain << " bytes, recomputed " << recomputed << " bytes";
}

}  // namespace
}  // namespace vdp
