// The model zoo. Every model is a vdp::Net: a torch::nn::Module whose forward takes a Batch, so the
// trainer runs any of them (and a user's own) the same way.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/rnn.h>

#include <memory>

#include "vdp/config/config.h"
#include "vdp/data/dataset.h"

namespace vdp {

class Net : public torch::nn::Module {
 public:
  // Output for the batch's inputs. Called in train() mode by the trainer, eval() mode in evaluation.
  virtual torch::Tensor forward(const Batch& batch) = 0;
};

// Linear-ReLU-Linear-ReLU-Linear on the flattened input.
class Mlp : public Net {
 public:
  Mlp(int64_t in, int64_t hidden, int64_t out);
  torch::Tensor forward(const Batch& batch) override;

 private:
  torch::nn::Sequential body_{nullptr};
};

// The net of the background documents: conv(3→10, 3x3, pad 1) → maxpool 2 → relu → linear(250→5)
// → sigmoid. Input [n, 3, 10, 10]; output probabilities [n, 5] for binary cross-entropy.
class SeedConvnet : public Net {
 public:
  SeedConvnet();
  torch::Tensor forward(const Batch& batch) override;

 private:
  torch::nn::Sequential body_{nullptr};
};

// Two conv blocks (conv 3x3 → norm → relu → maxpool 2; 32 then 64 channels) and a 128-wide head for
// 1x28x28 inputs, 10 classes. `norm`: none, batch (BatchNorm2d, statistics per micro-batch),
// syncbatch (vdp::SyncBatchNorm, statistics over the ranks' micro-batches of the same micro-step) or
// group (GroupNorm with 8 groups, batch-independent).
class FmnistCnn : public Net {
 public:
  explicit FmnistCnn(NormKind norm);
  torch::Tensor forward(const Batch& batch) override;

 private:
  torch::nn::Sequential body_{nullptr};
};

// Embedding → GRU → linear over tokens: logits [n, T, vocab]. The GRU is causal, so padding after a
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

// The model the configuration names, initialized from the seed, in the configured dtype (CPU).
std::shared_ptr<Net> make_model(const Config& cfg);

}  // namespace vdp
