#include "vdp/device/execution.h"

#include "vdp/device/cuda_graph.h"
#include "vdp/optim/fused_optim.h"

namespace vdp {
namespace {

class EagerMicroSteps final : public MicroStepRunner {
 public:
  void run(const Batch& batch, const std::function<void()>& stage, const Step& step) override { step(batch, stage); }
  int64_t replays() const override { return 0; }
};

class GraphedMicroSteps final : public MicroStepRunner {
 public:
  GraphedMicroSteps(const torch::Device& device, int64_t rows) : graph_(device, rows) {}
  void run(const Batch& batch, const std::function<void()>& stage, const Step& step) override {
    // The capture holds no host work: the tail is staged after the replay.
    graph_.run(batch, [&](const Batch& b) { step(b, nullptr); });
    if (stage) stage();
  }
  int64_t replays() const override { return graph_.replays(); }

 private:
  MicroStepGraph graph_;
};

class EagerTail final : public TailRunner {
 public:
  torch::Tensor run(FusedOptimizer& opt, const Work& work) override {
    torch::Tensor out = work();
    opt.launch();
    return out;
  }
  int64_t replays() const override { return 0; }
};

class GraphedTail final : public TailRunner {
 public:
  explicit GraphedTail(const torch::Device& device) : graph_(device) {}
  torch::Tensor run(FusedOptimizer& opt, const Work& work) override {
    // A replay cannot read a new host learning rate: the kernels join the capture only when they
    // read it from the device (not for float64 parameters, optim/fused_optim.h), else run after it.
    if (opt.lr_on_device()) return graph_.run(opt.launch_key(), [&] {
        torch::Tensor out = work();
        opt.launch();
        return out;
      });
    torch::Tensor out = graph_.run(opt.launch_key(), work);
    opt.launch();
    return out;
  }
  int64_t replays() const override { return graph_.replays(); }

 private:
  TailGraph graph_;
};

}  // namespace

std::unique_ptr<MicroStepRunner> make_micro_step_runner(bool graphs, const torch::Device& device, int64_t rows) {
  if (graphs) return std::make_unique<GraphedMicroSteps>(device, rows);
  return std::make_unique<EagerMicroSteps>();
}

std::unique_ptr<TailRunner> make_tail_runner(bool graphs, const torch::Device& device) {
  if (graphs) return std::make_unique<GraphedTail>(device);
  return std::make_unique<EagerTail>();
}

}  // namespace vdp
