// The fused optimizers (train/fused_optim.h) against LibTorch's own SGD, Adam and AdamW: the same
// parameters after several steps (float64 to 1e-12, float32 to 1e-6 relative), the same state in
// LibTorch's classes, and a state saved and loaded half-way continuing bit for bit.
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "vdp/train/fused_optim.h"
#include "vdp/train/optim.h"

namespace vdp {
namespace {

using Make = std::function<std::unique_ptr<torch::optim::Optimizer>(const std::vector<torch::Tensor>&, bool fused)>;

struct Case {
  const char* name;
  Make make;
};

const std::vector<Case> kCases = {
    {"sgd_momentum_nesterov_wd",
     [](const std::vector<torch::Tensor>& p, bool fused) -> std::unique_ptr<torch::optim::Optimizer> {
       auto o = torch::optim::SGDOptions(0.05).momentum(0.9).nesterov(true).weight_decay(1e-3);
       if (fused) return std::make_unique<FusedSGD>(p, o);
       return std::make_unique<torch::optim::SGD>(p, o);
     }},
    {"sgd_plain", [](const std::vector<torch::Tensor>& p, bool fused) -> std::unique_ptr<torch::optim::Optimizer> {
       auto o = torch::optim::SGDOptions(0.1);
       if (fused) return std::make_unique<FusedSGD>(p, o);
       return std::make_unique<torch::optim::SGD>(p, o);
     }},
    {"sgd_momentum_dampening", [](const std::vector<torch::Tensor>& p, bool fused) -> std::unique_ptr<torch::optim::Optimizer> {
       auto o = torch::optim::SGDOptions(0.1).momentum(0.5).dampening(0.3);
       if (fused) return std::make_unique<FusedSGD>(p, o);
       return std::make_unique<torch::optim::SGD>(p, o);
     }},
    {"adam_wd", [](const std::vector<torch::Tensor>& p, bool fused) -> std::unique_ptr<torch::optim::Optimizer> {
       auto o = torch::optim::AdamOptions(0.01).betas({0.8, 0.95}).eps(1e-7).weight_decay(1e-2);
       if (fused) return std::make_unique<FusedAdam>(p, o);
       return std::make_unique<torch::optim::Adam>(p, o);
     }},
    {"adam_amsgrad", [](const std::vector<torch::Tensor>& p, bool fused) -> std::unique_ptr<torch::optim::Optimizer> {
       auto o = torch::optim::AdamOptions(0.01).amsgrad(true);
       if (fused) return std::make_unique<FusedAdam>(p, o);
       return std::make_unique<torch::optim::Adam>(p, o);
     }},
    {"adamw", [](const std::vector<torch::Tensor>& p, bool fused) -> std::unique_ptr<torch::optim::Optimizer> {
       auto o = torch::optim::AdamWOptions(0.02).weight_decay(0.1);
       if (fused) return std::make_unique<FusedAdamW>(p, o);
       return std::make_unique<torch::optim::AdamW>(p, o);
     }},
};

std::vector<torch::Tensor> make_params(torch::Dtype dtype) {
  torch::manual_seed(3);
  std::vector<torch::Tensor> ps;
  for (auto shape : std::vector<std::vector<int64_t>>{{7, 5}, {5}, {3, 2, 4}, {1}}) {
    ps.push_back(torch::randn(shape, torch::kFloat64).to(dtype).requires_grad_());
  }
  return ps;
}

void set_grads(const std::vector<torch::Tensor>& ps, int step) {
  torch::manual_seed(100 + step);
  for (const auto& p : ps) {
    torch::Tensor g = torch::randn(p.sizes(), torch::kFloat64).to(p.scalar_type());
    if (p.grad().defined()) p.mutable_grad().copy_(g);
    else p.mutable_grad() = g;
  }
}

double rel(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i].to(torch::kFloat64) - b[i].to(torch::kFloat64)).pow(2).sum().item<double>();
    den += b[i].to(torch::kFloat64).pow(2).sum().item<double>();
  }
  return std::sqrt(num / den);
}

TEST(FusedOptim, EqualsLibTorchsLoop) {
  for (auto dtype : {torch::kFloat64, torch::kFloat32}) {
    const double tol = dtype == torch::kFloat64 ? 1e-12 : 1e-6;
    for (const auto& c : kCases) {
      SCOPED_TRACE(std::string(c.name) + (dtype == torch::kFloat64 ? " float64" : " float32"));
      auto pa = make_params(dtype), pb = make_params(dtype);
      auto loop = c.make(pa, false), fused = c.make(pb, true);
      const auto start = make_params(dtype);
      for (int s = 0; s < 6; ++s) {
        set_grads(pa, s);
        set_grads(pb, s);
        loop->step();
        fused->step();
      }
      EXPECT_LE(rel(pb, pa), tol);
      EXPECT_GT(rel(pa, start), 1e-3) << "the parameters moved";
      // The same state, in LibTorch's classes: what checkpoints save.
      const NamedTensors sa = optimizer_state(*loop, pa), sb = optimizer_state(*fused, pb);
      ASSERT_EQ(sa.size(), sb.size());
      for (size_t i = 0; i < sa.size(); ++i) {
        EXPECT_EQ(sa[i].first, sb[i].first);
        EXPECT_LE(rel({sb[i].second.to(torch::kFloat64)}, {sa[i].second.to(torch::kFloat64)}), tol * 10)
            << sa[i].first;
      }
    }
  }
}

TEST(FusedOptim, StateSavedAndLoadedContinuesBitForBit) {
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.name);
    auto pa = make_params(torch::kFloat64);
    auto a = c.make(pa, true);
    for (int s = 0; s < 3; ++s) set_grads(pa, s), a->step();
    // A second optimizer over copies of the parameters, given the first one's state.
    std::vector<torch::Tensor> pb;
    for (const auto& p : pa) pb.push_back(p.detach().clone().requires_grad_());
    auto b = c.make(pb, true);
    load_optimizer_state(*b, pb, optimizer_state(*a, pa), "test");
    for (int s = 3; s < 6; ++s) set_grads(pa, s), set_grads(pb, s), a->step(), b->step();
    for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "parameter " << i;
  }
}

// The device-side skip (Note [window read one late] in train/trainer.cpp): a step whose inf flag is
// 1 leaves parameters and state untouched, and after step_was_skipped() the run continues bit for
// bit as if that step had never been called, including a skip of the very first step (SGD's new
// momentum buffer, Adam's count at 0). A flag of 0 changes nothing.
TEST(FusedOptim, AStepSkippedOnTheDeviceIsAsIfNeverTaken) {
  for (int bad : {0, 2}) {
    for (const auto& c : kCases) {
      SCOPED_TRACE(std::string(c.name) + " skip at call " + std::to_string(bad));
      auto pa = make_params(torch::kFloat64), pb = make_params(torch::kFloat64);
      auto a = c.make(pa, true), b = c.make(pb, true);
      auto* skip = dynamic_cast<DeviceSkip*>(b.get());
      ASSERT_NE(skip, nullptr);
      const torch::Tensor zero = torch::zeros({1}), one = torch::ones({1});
      for (int s = 0; s < 5; ++s) {
        set_grads(pa, s), a->step();
        if (s == bad) {
          // Garbage gradients and the flag: nothing may move.
          std::vector<torch::Tensor> before;
          for (const auto& p : pb) before.push_back(p.detach().clone());
          const NamedTensors state_before = optimizer_state(*b, pb);
          set_grads(pb, s);
          for (const auto& p : pb) p.mutable_grad().fill_(std::numeric_limits<double>::quiet_NaN());
          skip->skip_if(one);
          b->step();
          skip->step_was_skipped();
          for (size_t i = 0; i < pb.size(); ++i) EXPECT_TRUE(torch::equal(pb[i], before[i])) << "parameter " << i;
          const NamedTensors state_after = optimizer_state(*b, pb);
          EXPECT_EQ(state_after.size(), state_before.size());
          for (size_t i = 0; i < state_after.size() && state_after.size() == state_before.size(); ++i)
            EXPECT_TRUE(torch::equal(state_after[i].second, state_before[i].second)) << state_after[i].first;
        }
        set_grads(pb, s);
        skip->skip_if(zero);
        b->step();
      }
      for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "parameter " << i;
      const NamedTensors sa = optimizer_state(*a, pa), sb = optimizer_state(*b, pb);
      EXPECT_EQ(sa.size(), sb.size());
      for (size_t i = 0; i < sa.size() && sa.size() == sb.size(); ++i)
        EXPECT_TRUE(torch::equal(sa[i].second, sb[i].second)) << sa[i].first;
    }
  }
}

}  // namespace
}  // namespace vdp
