// The seed example of the background question ("will 10 iterations of batch 4 be like a batch of
// 40?"), written against vdp's library: the user's own model (MyModel), their own tensors
// (input_data, targets) and PyTorch's BCELoss, trained through vdp::run. vdp splits the batch of 32
// into micro-batches of --micro-batch samples (over W ranks under mpirun) and takes one optimizer
// step per batch, equal to PyTorch's full-batch step (tests/examples/seed_example_test.sh checks it).
//
//   seed_example [--micro-batch 4] [--dtype float64] [--save-weights final.safetensors] ...
//   mpirun -np 2 seed_example --micro-batch 4
#include <vdp/dist/mpi_env.h>
#include <vdp/nn/models.h>
#include <vdp/task/loss.h>
#include <vdp/run/run.h>

#include <torch/nn/functional/loss.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <cstdio>

// The model of the question, as PyTorch defines it: the same layers and names.
class MyModel : public vdp::Net {
 public:
  MyModel() {
    const int64_t num_outputs = 5;  // input shape is 10x10
    conv_layer = register_module("conv_layer", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 10, 3).stride(1).padding(1)));
    fc_layer = register_module("fc_layer", torch::nn::Linear(10 * 5 * 5, num_outputs));
  }
  torch::Tensor forward(const vdp::Batch& b) override {
    auto x = conv_layer->forward(b.x);
    x = torch::max_pool2d(x, 2, 2);
    x = torch::relu(x);
    x = fc_layer->forward(x.flatten(1));
    return torch::sigmoid(x);
  }
  torch::nn::Conv2d conv_layer{nullptr};
  torch::nn::Linear fc_layer{nullptr};
};

int main(int argc, char** argv) {
  vdp::RunSpec spec;
  spec.program = "seed_example";
  // One step over the whole batch of 32: B = 32, SGD with lr 0.001, as in the question.
  spec.defaults = {{"global-batch", "32"}, {"micro-batch", "4"}, {"epochs", "1"}, {"optimizer", "sgd"},
                   {"lr", "0.001"}, {"eval", "false"}, {"quiet", "true"}};
  spec.make_task = [](const vdp::Config& cfg) {
    const auto dtype = cfg.dtype == vdp::DType::Float64 ? torch::kFloat64 : torch::kFloat32;
    vdp::Task task;
    torch::manual_seed(0);  // to ensure same results for this example
    auto model = std::make_shared<MyModel>();
    vdp::set_float_dtype(*model, dtype);
    task.model = model;
    torch::manual_seed(1);  // the user's own tensors, drawn as in the question
    const int64_t batch_size = 32;
    torch::Tensor input_data = torch::randn({batch_size, 3, 10, 10}).to(dtype);
    // The question writes (batch_size, 20), which does not match the model's 5 outputs.
    torch::Tensor targets = torch::randint(0, 1, {batch_size, 5}).to(dtype);
    task.train = std::make_shared<vdp::TensorDataset>(input_data, targets);
    // BCELoss(reduction='mean') as (sum, count): a sample's loss is the mean over its 5 outputs.
    task.loss = vdp::bce_sum;
    return task;
  };
  spec.after_fit = [](vdp::Trainer& t, const vdp::TrainResult& r) {
    if (vdp::MpiEnv::get().rank() == 0) {
      std::printf("Loss value:  %.17g\n", r.last_loss);
      std::printf("Model checksum:  %.17g\n", r.params_sum);
      std::printf("(W=%d, micro-batch %lld, %lld micro-steps per step)\n", vdp::MpiEnv::get().size(),
                  static_cast<long long>(t.plan().params().micro_batch),
                  static_cast<long long>(t.plan().full_micro_steps()));
    }
    return 0;
  };
  return vdp::run(argc, argv, spec);
}
