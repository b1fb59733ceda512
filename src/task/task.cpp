#include "vdp/task/task.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>


#include "vdp/core/error.h"
#include "vdp/data/datasets.h"
#include "vdp/data/npy.h"
#include "vdp/data/token_shards.h"
#include "vdp/nn/gpt.h"

namespace vdp {
namespace {

std::string shape_of(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "] " + std::string(c10::toString(t.scalar_type()));
}

// --loss for data whose targets only the arrays tell (npy): integer class ids [n] → cross-entropy,
// integer tokens [n, T] → token cross-entropy, floating point → mean squared error.
LossKind loss_from_targets(const torch::Tensor& y) {
  if (y.is_floating_point()) return LossKind::Mse;
  return y.dim() == 1 ? LossKind::CrossEntropy : LossKind::TokenCrossEntropy;
}

void set_loss(Task& t, LossKind loss, ModelKind model) {
  switch (loss) {
    case LossKind::Auto: break;
    case LossKind::CrossEntropy: t.loss = cross_entropy_sum, t.score = argmax_score; break;
    case LossKind::Bce:
      // seed-convnet ends in a sigmoid (probabilities); every other model gives logits.
      t.loss = model == ModelKind::SeedConvnet ? LossFn(bce_sum) : LossFn(bce_logits_sum);
      t.score = model == ModelKind::SeedConvnet ? ScoreFn(multilabel_score) : ScoreFn();
      break;
    case LossKind::Mse: t.loss = mse_sum, t.score = nullptr; break;
    case LossKind::TokenCrossEntropy: t.loss = token_cross_entropy_sum, t.score = token_argmax_score; break;
  }
}

// Runs the model and the loss on two samples (eval mode, no gradients), so a model whose output
// does not fit the targets is one line now instead of a LibTorch error in the first step.
void probe(const Task& t, const Config& cfg, LossKind loss) {
  const Batch b = t.train->get({0, std::min<int64_t>(1, t.train->size() - 1)});
  torch::NoGradGuard no_grad;
  t.model->eval();
  torch::Tensor out;
  try {
    out = t.model->forward(b);
    const LossSum l = t.loss(out, b);
    VDP_CHECK(l.sum.defined() && l.sum.dim() == 0 && l.count.defined() && l.count.dim() == 0, "the loss must return "
              "0-d (sum, count)");
  } catch (const std::exception& e) {
    const auto* c10 = dynamic_cast<const c10::Error*>(&e);
    const std::string text = c10 ? c10->what_without_backtrace() : e.what();
    // The problem itself: the first line, or for an error raised inside a TorchScript module (whose
    // first line only says so) its last non-empty line ("RuntimeError: ...").
    std::string msg = text.substr(0, text.find('\n'));
    if (msg.find("TorchScript interpreter") != std::string::npos) {
      size_t end = text.find_last_not_of(" \n");
      size_t start = end == std::string::npos ? 0 : text.rfind('\n', end);
      msg = text.substr(start == std::string::npos ? 0 : start + 1, end == std::string::npos ? 0 : end - start);
    }
    t.model->train();
    VDP_FAIL("--model ", to_string(cfg.model), " does not fit this data with --loss ", to_string(loss),
             ": inputs ", shape_of(b.x), ", targets ", shape_of(b.y),
             out.defined() ? ", model output " + shape_of(out) : std::string(), " (", msg,
             "); choose a model and --loss that fit the arrays",
             cfg.model == ModelKind::Mlp ? " (mlp takes floating-point inputs of any shape, and uint8 pixels; other "
                                           "integer inputs are ids or tokens: save them as floats, or use gpt or seq-gru)"
                                         : " (mlp fits any floating-point input; see --help)");
  }
  t.model->train();
}

}  // namespace

Task make_task(const Config& cfg) {
  const auto dtype = cfg.dtype == DType::Float64 ? torch::kFloat64 : torch::kFloat32;
  Task t;
  DatasetPair data;
  ModelIO io;
  LossKind loss = cfg.loss;
  switch (cfg.dataset) {
    case DatasetKind::FashionMnist:
      data = load_fashion_mnist(cfg.data_dir, dtype);
      t.loss = cross_entropy_sum;
      t.score = argmax_score;
      break;
    case DatasetKind::Regression:
      data = make_regression(cfg.samples, cfg.test_samples, cfg.seed, dtype);
      t.loss = mse_sum;
      break;
    case DatasetKind::BceToy:
      data = make_bce_toy(cfg.samples, cfg.test_samples, cfg.seed, dtype);
      t.loss = bce_sum;
      t.score = multilabel_score;
      break;
    case DatasetKind::Sequence:
      data = make_sequences(cfg.samples, cfg.test_samples, cfg.seed);
      t.loss = token_cross_entropy_sum;
      t.score = token_argmax_score;
      t.items_per_sample = (1.0 + kSeqMaxLen) / 2.0;
      break;
    case DatasetKind::Tokens: {
      const int64_t context = cfg.model == ModelKind::Gpt2Small ? gpt2_small_shape().context : cfg.context;
      data = load_token_shards(cfg.data_dir, context, cfg.eot_token);
      const auto* tokens = static_cast<const TokenDataset*>(data.train.get());
      t.loss = token_cross_entropy_sum;
      t.score = token_argmax_score;
      t.items_per_sample = tokens->mean_targets();
      io.outputs = std::max(tokens->max_token(), tokens->eot()) + 1;  // the vocabulary
      if (cfg.model == ModelKind::Gpt2Small)
        VDP_CHECK(io.outputs <= gpt2_small_shape().vocab, "the token shards hold token ", io.outputs - 1,
                  ", beyond GPT-2's vocabulary of 50257");
      break;
    }
    case DatasetKind::Npy: {
      data = load_npy_dataset(cfg.data_dir, dtype);
      const Batch first = data.train->get({0});
      if (loss == LossKind::Auto) loss = loss_from_targets(first.y);
      io.inputs = first.x[0].numel();
      io.in_channels = first.x.dim() == 4 ? first.x.size(1) : 0;
      if (loss == LossKind::CrossEntropy) {
        VDP_CHECK(!first.y.is_floating_point() && first.y.dim() == 1, "--loss cross-entropy needs integer class ids "
                  "of shape [n] in y.npy, not ", shape_of(first.y));
        // The class count from the labels alone (y only: x may be far larger than memory).
        const torch::Tensor y = static_cast<const NpyDataset&>(*data.train).targets().to(torch::kInt64);
        VDP_CHECK(y.min().item<int64_t>() >= 0, "y.npy holds a negative class id; class ids are 0..C-1");
        io.outputs = y.max().item<int64_t>() + 1;
      } else {
        io.outputs = first.y[0].numel();
      }
      if (loss == LossKind::TokenCrossEntropy && first.y.dim() >= 2) t.items_per_sample = first.y[0].numel();
      break;
    }
  }
  set_loss(t, loss, cfg.model);
  t.train = data.train;
  t.test = data.test;
  t.model = make_model(cfg, io);
  if (cfg.dataset == DatasetKind::Npy || cfg.loss != LossKind::Auto || cfg.model == ModelKind::Torchscript)
    probe(t, cfg, loss);
  return t;
}

}  // namespace vdp
