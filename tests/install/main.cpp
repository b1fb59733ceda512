// A user's own model, dataset and loss trained through vdp::run from C++, against an installed vdp or
// a build tree (find_package(vdp)). Runs at world size 1, or under mpirun with W ranks; takes every
// vdp-train option (curve-fit --help lists them) and fails with one line and an exit code.
//
// The task: fit y = sin(3x) + x/2 on x in [-1, 1] with a small MLP and a Huber loss. The loss is
// returned as (sum, count) so vdp weights every sample exactly whatever W, K and m are.
#include <vdp/dist/mpi_env.h>
#include <vdp/run/run.h>

#include <torch/nn/functional/loss.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>

#include <cstdio>

// The user's model: any torch::nn::Module deriving from vdp::Net (forward takes a vdp::Batch).
class CurveNet : public vdp::Net {
 public:
  CurveNet() {
    body_ = register_module("body", torch::nn::Sequential(torch::nn::Linear(1, 32), torch::nn::Tanh(),
                                                          torch::nn::Linear(32, 32), torch::nn::Tanh(),
                                                          torch::nn::Linear(32, 1)));
  }
  torch::Tensor forward(const vdp::Batch& b) override { return body_->forward(b.x); }

 private:
  torch::nn::Sequential body_{nullptr};
};

// The user's dataset: anything that hands out batches for index lists.
class CurveData : public vdp::Dataset {
 public:
  explicit CurveData(int64_t n) : x_(torch::linspace(-1, 1, n).unsqueeze(1)), y_(torch::sin(3 * x_) + x_ / 2) {}
  int64_t size() const override { return x_.size(0); }
  vdp::Batch get(const std::vector<int64_t>& ids) const override {
    auto idx = torch::tensor(ids, torch::kInt64);
    return {x_.index_select(0, idx), y_.index_select(0, idx), {}};
  }

 private:
  torch::Tensor x_, y_;
};

// The user's loss: Huber, summed over samples, with the sample count.
vdp::LossSum huber(const torch::Tensor& out, const vdp::Batch& b) {
  namespace F = torch::nn::functional;
  auto per_sample = F::huber_loss(out, b.y, F::HuberLossFuncOptions().reduction(torch::kNone).delta(0.5)).sum(1);
  return {per_sample.sum(), torch::full({}, static_cast<double>(b.size()))};
}

int main(int argc, char** argv) {
  // vdp::run parses the options (every vdp-train option works here too, on the command line or in an
  // INI file), trains on every rank and turns any error into one line and an exit code.
  vdp::RunSpec spec;
  spec.program = "curve-fit";
  spec.defaults = {{"global-batch", "64"}, {"micro-batch", "16"}, {"epochs", "60"}, {"optimizer", "adam"},
                   {"lr", "0.01"}, {"quiet", "true"}};
  spec.make_task = [](const vdp::Config& cfg) {
    vdp::Task task;
    task.train = std::make_shared<CurveData>(1000);
    torch::manual_seed(static_cast<int64_t>(cfg.seed));
    task.model = std::make_shared<CurveNet>();
    task.loss = huber;
    return task;
  };
  double first = -1;
  spec.before_fit = [&](vdp::Trainer& t) {
    t.on_step([&](const vdp::StepRecord& r) {
      if (first < 0) first = r.loss;
    });
  };
  spec.after_fit = [&](vdp::Trainer& t, const vdp::TrainResult& r) {
    if (vdp::MpiEnv::get().rank() == 0)
      std::printf("curve-fit: %lld steps at W=%d, K=%lld: loss %.5f -> %.5f\n", static_cast<long long>(r.steps),
                  vdp::MpiEnv::get().size(), static_cast<long long>(t.plan().full_micro_steps()), first, r.last_loss);
    // The fit must have learned the curve: the Huber loss falls by two orders of magnitude.
    return r.last_loss < first / 100 ? 0 : 1;
  };
  return vdp::run(argc, argv, spec);
}
