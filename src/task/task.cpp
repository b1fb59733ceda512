#include "vdp/task/task.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>


#include "vdp/core/error.h"
#include "vdp/core/error_line.h"
#include "vdp/core/generator_state.h"
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

// Runs the model, the loss and backward on two samples (eval mode: no running statistics change, no
// dropout), so a model whose output does not fit the targets, or whose loss has no gradient (an
// output detached, or computed by an operation without one), is one line now instead of a LibTorch
// error in the first step. Backward goes through autograd::grad, so no .grad is touched, and the
// generators are put back in case the module draws random numbers.
void probe(const Task& t, const Config& cfg, LossKind loss) {
  const Batch b = t.train->get({0, std::min<int64_t>(1, t.train->size() - 1)});
  std::vector<torch::Tensor> params;
  for (const auto& p : t.model->parameters())
    if (p.requires_grad()) params.push_back(p);
  GeneratorState rng(b.x.device());
  rng.capture();
  t.model->eval();
  torch::Tensor out;
  std::string problem;
  try {
    out = t.model->forward(b);
    const LossSum l = t.loss(out, b);
    VDP_CHECK(l.sum.defined() && l.sum.dim() == 0 && l.count.defined() && l.count.dim() == 0, "the loss must return "
              "0-d (sum, count)");
    if (!params.empty()) {
      if (!l.sum.requires_grad())
        problem = "the loss has no gradient with respect to the parameters: the model's output is detached from "
                  "them or made by an operation without a gradient (argmax, a comparison, an integer cast)";
      else
        torch::autograd::grad({l.sum}, params, {}, /*retain_graph=*/false, /*create_graph=*/false,
                              /*allow_unused=*/true);
    }
  } catch (const std::exception& e) {
    problem = error_line(e);
  }
  t.model->train();
  rng.restore();
  if (problem.empty()) return;
  VDP_FAIL("--model ", to_string(cfg.model), " does not fit this data with --loss ", to_string(loss),
           ": inputs ", shape_of(b.x), ", targets ", shape_of(b.y),
           out.defined() ? ", model output " + shape_of(out) : std::string(), " (", problem,
           "); choose a model and --loss that fit the arrays",
           cfg.model == ModelKind::Mlp ? " (mlp takes floating-point inputs of any shape, and uint8 pixels; other "
                                         "integer inputs are ids or tokens: save them as floats, or use gpt or seq-gru)"
                                       : " (mlp fits any floating-point input; see --help)");
}

// Names of a split's files in messages.
struct SplitNames {
  std::string inputs, targets, mask;
};

// What a pass over a split learned: the largest token id (inputs and counted targets) of integer
// sequences, and the shapes and dtypes of one sample.
struct SplitFacts {
  int64_t max_token = -1;
  std::vector<int64_t> x_shape, y_shape;
  torch::ScalarType x_type = torch::kFloat, y_type = torch::kFloat;
};

// The whole split, checked once before the first window, in pieces of 4096 samples (a read of the
// data, as an epoch does, without the model): inputs and floating-point targets finite, masks of 0
// and 1 that count at least one target, class ids in [0, classes), token ids not negative. Each
// problem is one line naming the file and the sample.
SplitFacts check_split(const Dataset& d, const SplitNames& names, LossKind loss, int64_t classes) {
  SplitFacts f;
  double counted = 0;
  bool masked = false;
  const int64_t n = d.size();
  for (int64_t start = 0; start < n; start += 4096) {
    std::vector<int64_t> ids;
    for (int64_t i = start; i < std::min(n, start + 4096); ++i) ids.push_back(i);
    const Batch b = d.get(ids);
    if (start == 0) {
      f.x_shape = b.x.sizes().slice(1).vec(), f.y_shape = b.y.sizes().slice(1).vec();
      f.x_type = b.x.scalar_type(), f.y_type = b.y.scalar_type();
    }
    auto first_bad_row = [&](const torch::Tensor& bad_per_element) -> int64_t {
      const torch::Tensor rows = bad_per_element.reshape({b.size(), -1}).any(1).nonzero();
      return rows.numel() == 0 ? -1 : start + rows[0][0].item<int64_t>();
    };
    for (const auto& [t, name] : {std::pair<const torch::Tensor&, const std::string&>{b.x, names.inputs},
                                  {b.y, names.targets}})
      if (t.is_floating_point())
        if (const int64_t row = first_bad_row(t.isfinite().logical_not()); row >= 0)
          VDP_FAIL("'", name, "' holds NaN or Inf in sample ", row, "; vdp trains on finite numbers only (clean "
                   "or drop that sample)");
    if (b.mask.defined()) {
      if (const int64_t row = first_bad_row(b.mask.ne(0).logical_and(b.mask.ne(1))); row >= 0)
        VDP_FAIL("'", names.mask, "' holds a value other than 0 and 1 in sample ", row,
                 " (a mask says which targets count: 1 counts, 0 does not)");
      counted += b.mask.to(torch::kDouble).sum().item<double>();
      masked = true;
    }
    if (loss == LossKind::CrossEntropy && !b.y.is_floating_point()) {
      if (const int64_t row = first_bad_row(b.y.lt(0).logical_or(b.y.ge(classes))); row >= 0)
        VDP_FAIL("'", names.targets, "' holds class ", b.y.reshape({b.size(), -1})[row - start][0].item<int64_t>(),
                 " in sample ", row, ", outside 0..", classes - 1, " (the classes of the training targets)");
    }
    if (loss == LossKind::TokenCrossEntropy) {
      for (const auto& [t, name] : {std::pair<const torch::Tensor&, const std::string&>{b.x, names.inputs},
                                    {b.y, names.targets}}) {
        if (t.is_floating_point() || t.numel() == 0) continue;
        const torch::Tensor counts = b.mask.defined() && t.sizes() == b.mask.sizes() && &t == &b.y ? b.mask.ne(0)
                                                                                                   : torch::ones_like(t, torch::kBool);
        if (const int64_t row = first_bad_row(t.lt(0).logical_and(counts)); row >= 0)
          VDP_FAIL("'", name, "' holds a negative token id in sample ", row, "; token ids are 0..vocabulary-1");
        const torch::Tensor kept = t.masked_select(counts);
        if (kept.numel() > 0) f.max_token = std::max(f.max_token, kept.max().item<int64_t>());
      }
    }
  }
  VDP_CHECK(!masked || counted > 0, "'", names.mask,
            "' counts no target at all (every value is 0); a mask says which targets count");
  return f;
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
      if (data.test) {
        const int64_t val_max = static_cast<const TokenDataset*>(data.test.get())->max_token();
        VDP_CHECK(val_max < io.outputs, "the *val*.bin token shards in '", cfg.data_dir, "' hold token ", val_max,
                  ", beyond the training shards' vocabulary of ", io.outputs, " tokens (make both from one tokenizer)");
      }
      break;
    }
    case DatasetKind::Npy: {
      data = load_npy_dataset(cfg.data_dir, dtype);
      const Batch first = data.train->get({0});
      if (loss == LossKind::Auto) loss = loss_from_targets(first.y);
      io.inputs = first.x[0].numel();
      io.in_channels = first.x.dim() == 4 ? first.x.size(1) : 0;
      const std::string dir = cfg.data_dir + "/";
      if (loss == LossKind::CrossEntropy) {
        VDP_CHECK(!first.y.is_floating_point() && first.y.dim() == 1, "--loss cross-entropy needs integer class ids "
                  "of shape [n] in y.npy, not ", shape_of(first.y));
        // The class count from the labels alone (y only: x may be far larger than memory).
        const torch::Tensor y = static_cast<const NpyDataset&>(*data.train).targets().to(torch::kInt64);
        VDP_CHECK(y.min().item<int64_t>() >= 0, "'", dir, "y.npy' holds a negative class id; class ids are 0..C-1");
        io.outputs = y.max().item<int64_t>() + 1;
        // A model with a million outputs is a mistake in the labels, not a classifier.
        VDP_CHECK(io.outputs <= 1000000, "'", dir, "y.npy' holds class id ", io.outputs - 1, ", so the model would "
                  "have ", io.outputs, " outputs; class ids are 0..C-1 (renumber the classes)");
      } else {
        io.outputs = first.y[0].numel();
      }
      const SplitFacts train = check_split(*data.train, {dir + "x.npy", dir + "y.npy", dir + "mask.npy"}, loss,
                                           io.outputs);
      if (data.test) {
        const SplitFacts test = check_split(*data.test, {dir + "test_x.npy", dir + "test_y.npy", dir + "test_mask.npy"},
                                            loss, io.outputs);
        VDP_CHECK(test.x_shape == train.x_shape && test.x_type == train.x_type, "'", dir, "test_x.npy' holds samples of "
                  "shape ", c10::IntArrayRef(test.x_shape), " ", test.x_type, " but x.npy ", c10::IntArrayRef(train.x_shape),
                  " ", train.x_type, "; the test split must look like the training split");
        VDP_CHECK(test.y_shape == train.y_shape && test.y_type == train.y_type, "'", dir, "test_y.npy' holds targets "
                  "of shape ", c10::IntArrayRef(test.y_shape), " ", test.y_type, " but y.npy ",
                  c10::IntArrayRef(train.y_shape), " ", train.y_type, "; the test split must look like the training split");
        if (loss == LossKind::TokenCrossEntropy)
          VDP_CHECK(test.max_token <= train.max_token, "'", dir, "test_x.npy' or 'test_y.npy' holds token ",
                    test.max_token, ", beyond the training split's vocabulary of ", train.max_token + 1, " tokens");
      }
      if (loss == LossKind::TokenCrossEntropy) {
        // Integer sequences: the vocabulary is the data's (its largest token id + 1), not a sequence's length.
        io.outputs = train.max_token + 1;
        if (cfg.model == ModelKind::SeqGru)
          VDP_CHECK(io.outputs <= kSeqVocab, "'", dir, "' holds token ", io.outputs - 1, ", beyond seq-gru's vocabulary "
                    "of ", kSeqVocab, " tokens (use --model gpt, whose vocabulary follows the data)");
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
