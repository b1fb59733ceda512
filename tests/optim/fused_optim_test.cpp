// The fused optimizers (optim/fused_optim.h) against LibTorch's own SGD, Adam and AdamW: the same
// parameters after several steps (float64 to 1e-12, float32 to 1e-6 relative), the same state in
// LibTorch's classes, and a state saved and loaded half-way continuing bit for bit.
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "vdp/optim/fused_optim.h"
#include "vdp/optim/optim.h"

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

// The device-side skip (Note [window read one late] in train/window.cpp): a step whose inf flag is
// 1 leaves parameters and state untouched, and after step_was_skipped() the run continues bit for
// bit as if that step had never been called, including a skip of the very first step (SGD's new
// momentum buffer, Adam's count at 0). A flag of 0 changes nothing.
TEST(FusedOptim, AStepSkippedOnTheDeviceIsAsIfNeverTaken) {
  for (int bad : {0, 2}) {
    for (const auto& c : kCases) {
      SCOPED_TRACE(std::string(c.name) + " skip at call " + std::to_string(bad));
      auto pa = make_params(torch::kFloat64), pb = make_params(torch::kFloat64);
      auto a = c.make(pa, true), b = c.make(pb, true);
      auto* skip = dynamic_cast<FusedOptimizer*>(b.get());
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


// Note [a step in two halves]: what a captured tail replays. With the learning rate read from a
// float32 tensor (lr_from), the host's lr option no longer matters (NaN there changes nothing), and
// a rate changed in the tensor between steps gives the very parameters of the host rate rounded to
// float32 (float32 and float64 parameters, every optimizer, a new rate every step).
TEST(FusedOptim, ALearningRateOnTheDeviceEqualsTheHostRate) {
  for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
    for (const auto& c : kCases) {
      SCOPED_TRACE(std::string(c.name) + (dtype == torch::kFloat32 ? " float32" : " float64"));
      auto pa = make_params(dtype), pb = make_params(dtype);
      auto a = c.make(pa, true), b = c.make(pb, true);
      auto* dev = dynamic_cast<FusedOptimizer*>(b.get());
      ASSERT_NE(dev, nullptr);
      const torch::Tensor lr = torch::zeros({}, torch::kFloat32);
      dev->lr_from(lr);
      for (int s = 0; s < 6; ++s) {
        const double rate = 0.03 / (s + 1) + 1e-3 * s;  // not a float32 number
        set_learning_rate(*a, static_cast<double>(static_cast<float>(rate)));
        set_learning_rate(*b, std::numeric_limits<double>::quiet_NaN());
        lr.fill_(rate);
        set_grads(pa, s), set_grads(pb, s);
        a->step(), b->step();
      }
      for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "parameter " << i;
      // Without it, the host's rate again.
      dev->lr_from(torch::Tensor());
      set_learning_rate(*a, 0.01), set_learning_rate(*b, 0.01);
      set_grads(pa, 7), set_grads(pb, 7);
      a->step(), b->step();
      for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "parameter " << i;
    }
  }
}

// prepare() + launch() is step(), a first step skipped on the device included; the lists' launch key
// that prepare() returns is the same from one step to the next once every parameter has its state
// (what a tail capture is replayed for), and differs for the step that starts SGD's momentum
// buffers (another kernel).
TEST(FusedOptim, ThePreparedListsAreSteadyAfterTheFirstStep) {
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.name);
    auto pa = make_params(torch::kFloat64), pb = make_params(torch::kFloat64);
    auto a = c.make(pa, true), b = c.make(pb, true);
    auto* dev = dynamic_cast<FusedOptimizer*>(b.get());
    ASSERT_NE(dev, nullptr);
    // A first step skipped on the device, then taken.
    set_grads(pb, 0);
    dev->skip_if(torch::ones({1}));
    dev->prepare();
    dev->launch();
    dev->step_was_skipped();
    dev->skip_if(torch::zeros({1}));
    std::vector<std::vector<const void*>> ids;
    for (int s = 0; s < 5; ++s) {
      set_grads(pa, s), set_grads(pb, s);
      a->step();
      dev->prepare();
      ids.push_back(dev->launch_key());
      dev->launch();
    }
    for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "parameter " << i;
    // SGD's buffers start in the first taken step: another kernel, so another launch key.
    const bool momentum = std::string(c.name).rfind("sgd_momentum", 0) == 0;
    if (momentum) {
      EXPECT_NE(ids[0], ids[1]) << "the step that starts the momentum buffers looks steady";
    }
    for (size_t s = 2; s < ids.size(); ++s) EXPECT_EQ(ids[s], ids[1]) << "step " << s;
  }
}

// Note [a step in two halves]: a captured tail is keyed by the kernels' lists, so skipped steps must
// not move the optimizer's state. Skipped steps before any step was taken (a scaler backing off:
// SGD's buffers and Adam's state not started yet) and later ones keep the launch key of the step
// before them, with every state tensor at the same address; the run still equals one where the
// skipped steps were never called, and a checkpoint after them holds no state for a step never taken.
TEST(FusedOptim, SkippedStepsKeepTheStateTensorsAndTheLaunchKey) {
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.name);
    auto pa = make_params(torch::kFloat64), pb = make_params(torch::kFloat64);
    auto a = c.make(pa, true), b = c.make(pb, true);
    auto* dev = dynamic_cast<FusedOptimizer*>(b.get());
    ASSERT_NE(dev, nullptr);
    const torch::Tensor zero = torch::zeros({1}), one = torch::ones({1});
    auto skipped_step = [&](int s) {
      set_grads(pb, s);
      dev->skip_if(one);
      dev->prepare();
      const std::vector<const void*> key = dev->launch_key();
      dev->launch();
      dev->step_was_skipped();
      return key;
    };
    auto taken_step = [&](int s) {
      set_grads(pa, s), set_grads(pb, s);
      a->step();
      dev->skip_if(zero);
      dev->prepare();
      const std::vector<const void*> key = dev->launch_key();
      dev->launch();
      return key;
    };
    const auto first = skipped_step(100);
    EXPECT_TRUE(optimizer_state(*b, pb).empty() || std::string(c.name) == "sgd_plain")
        << "a skipped first step left state behind";
    for (int s = 101; s < 104; ++s) EXPECT_EQ(skipped_step(s), first) << "skipped step " << s;
    const auto start = taken_step(0);
    EXPECT_EQ(start, first) << "the first taken step got other lists than the skipped ones before it";
    const auto steady = taken_step(1);
    for (int s = 2; s < 4; ++s) EXPECT_EQ(taken_step(s), steady) << "step " << s;
    for (int s = 200; s < 203; ++s) EXPECT_EQ(skipped_step(s), steady) << "skipped step " << s;
    for (int s = 4; s < 6; ++s) EXPECT_EQ(taken_step(s), steady) << "step " << s;
    for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "parameter " << i;
    const NamedTensors sa = optimizer_state(*a, pa), sb = optimizer_state(*b, pb);
    EXPECT_EQ(sa.size(), sb.size());
    for (size_t i = 0; i < sa.size() && sa.size() == sb.size(); ++i)
      EXPECT_TRUE(torch::equal(sa[i].second, sb[i].second)) << sa[i].first;
  }
}

}  // namespace
}  // namespace vdp
