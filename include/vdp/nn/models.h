// The model zoo. Every model is a vdp::Net: a torch::nn::Module whose forward takes a Batch, so the
// trainer runs any of them (and a user's own) the same way. Each built-in model has a PyTorch twin
// with the same parameter and buffer names (launch/vdp_models.py, shown in the README), so weights
// saved by vdp load into it with load_state_dict and the other way round.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/rnn.h>

#include <functional>
#include <memory>

#include "vdp/config/config.h"
#include "vdp/data/dataset.h"

namespace vdp {

class Net : public torch::nn::Module {
 public:
  // Output for the batch's inputs. Called in train() mode by the trainer, eval() mode in evaluation.
  virtual torch::Tensor forward(const Batch& batch) = 0;
  // --recompute: the blocks a model runs through run_block keep only their inputs and are run again
  // in backward (nn/recompute.h); same gradients, less memory. Built-in: gpt's h.N, resnet18's
  // layer1..4, the mlp's three layers.
  void set_recompute(bool on) { recompute_ = on; }
  bool recompute() const { return recompute_; }

 protected:
  // fn(x), one block whose parameters are those of `owner`: through vdp::checkpoint under
  // --recompute, plainly otherwise.
  torch::Tensor run_block(torch::nn::Module& owner, const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                          const torch::Tensor& x);

 private:
  bool recompute_ = false;
};

// fc1 → relu → fc2 → relu → fc3 on the flattened input.
class Mlp : public Net {
 public:
  Mlp(int64_t in, int64_t hidden, int64_t out);
  torch::Tensor forward(const Batch& batch) override;

 private:
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr}, fc3_{nullptr};
};

// The net of the background documents (MyModel there, same names): conv_layer(3→10, 3x3, pad 1)
// → maxpool 2 → relu → fc_layer(250→5) → sigmoid. Input [n, 3, 10, 10]; output probabilities [n, 5]
// for binary cross-entropy.
class SeedConvnet : public Net {
 public:
  SeedConvnet();
  torch::Tensor forward(const Batch& batch) override;

 private:
  torch::nn::Conv2d conv_layer_{nullptr};
  torch::nn::Linear fc_layer_{nullptr};
};

// Two conv blocks (conv 3x3 → norm → relu → maxpool 2; 32 then 64 channels) and a 128-wide head for
// 1x28x28 inputs, 10 classes: conv1, norm1, conv2, norm2, fc1, fc2. `norm`: none (no norm layers;
// the convolutions have biases), batch (BatchNorm2d, statistics per micro-batch), syncbatch
// (vdp::SyncBatchNorm, statistics over the ranks' micro-batches of the same micro-step) or group
// (GroupNorm with 8 groups, batch-independent).
class FmnistCnn : public Net {
 public:
  explicit FmnistCnn(NormKind norm);
  torch::Tensor forward(const Batch& batch) override;

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  torch::nn::AnyModule norm1_, norm2_;  // empty with --norm none
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};

// ResNet-18 (basic blocks, [2, 2, 2, 2], 64-128-256-512 channels) for small images [n, C, H, W]
// (28x28 or 32x32): a 3x3 stride-1 stem without max-pooling, as usual for CIFAR-size inputs, global
// average pooling, fc to `classes`. Names as torchvision's resnet18 (conv1, bn1, layer1.0.conv1,
// layer1.0.bn1, ..., layer2.0.downsample.0/1, fc). `norm`: none, batch, syncbatch or group (8
// groups); `channels_last`: convolutions on NHWC tensors (weights and inputs).
class ResNet18 : public Net {
 public:
  ResNet18(int64_t in_channels, int64_t classes, NormKind norm, bool channels_last);
  torch::Tensor forward(const Batch& batch) override;

 private:
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::AnyModule bn1_;  // empty with --norm none
  torch::nn::Sequential layers_[4];
  torch::nn::Linear fc_{nullptr};
  bool channels_last_ = false;
};

// embed → gru → head over tokens: logits [n, T, vocab]. The GRU is causal, so padding after a
// sequence's end cannot change the outputs at its real positions.
class SeqGru : public Net {
 public:
  SeqGru(int64_t vocab, int64_t hidden);
  torch::Tensor forward(const Batch& batch) override;

 private:
  torch::nn::Embedding embed_{nullptr};
  torch::nn::GRU gru_{nullptr};
  torch::nn::Linear head_{nullptr};
};

// Casts the floating-point parameters and buffers of `module` to `dtype` (integer buffers such as
// BatchNorm's num_batches_tracked stay int64, as in PyTorch's Module.to(dtype)).
void set_float_dtype(torch::nn::Module& module, torch::ScalarType dtype);

// Input and output widths for a model that adapts to the data (mlp); 0: the built-in dataset's.
struct ModelIO {
  int64_t inputs = 0;   // features per sample (the product of a sample's input dimensions)
  int64_t outputs = 0;  // classes, or values per sample
  int64_t in_channels = 0;  // image channels (resnet18)
};

// The model the configuration names, initialized from the seed, in the configured dtype (CPU).
std::shared_ptr<Net> make_model(const Config& cfg, const ModelIO& io = {});

}  // namespace vdp
