// Losses return (sum, count): the sum of per-item losses and the number of items it covers
// (include/vdp/README.md, "Exact weighting"). Items are samples, or real tokens for sequence losses. Dividing only after the
// counts are summed over every micro-step and rank makes any split of a step give the big-batch
// gradient exactly, whatever the slot sizes.
#pragma once

#include <torch/types.h>

#include <functional>

#include "vdp/core/loss_sum.h"
#include "vdp/data/dataset.h"

namespace vdp {

using LossFn = std::function<LossSum(const torch::Tensor& output, const Batch& batch)>;

// (correct, total) items of a batch, for accuracy; both 0-d int64 tensors.
struct Score {
  torch::Tensor correct;
  torch::Tensor total;
};
using ScoreFn = std::function<Score(const torch::Tensor& output, const Batch& batch)>;

// Cross-entropy over logits [n, C] and class ids [n]; items are samples.
LossSum cross_entropy_sum(const torch::Tensor& logits, const Batch& batch);
// Binary cross-entropy over probabilities [n, L] and 0/1 targets [n, L]; a sample's loss is the mean
// over its L labels (so the mean over samples equals torch's BCELoss(reduction='mean')).
LossSum bce_sum(const torch::Tensor& probs, const Batch& batch);
// The same on logits (BCEWithLogitsLoss): for models without a final sigmoid.
LossSum bce_logits_sum(const torch::Tensor& logits, const Batch& batch);
// Squared error, a sample's loss being the mean over its D outputs (equal to MSELoss 'mean' overall).
LossSum mse_sum(const torch::Tensor& pred, const Batch& batch);
// Token cross-entropy over logits [n, T, V], targets [n, T] and mask [n, T]; items are real tokens
// (every token when the batch has no mask).
LossSum token_cross_entropy_sum(const torch::Tensor& logits, const Batch& batch);

Score argmax_score(const torch::Tensor& logits, const Batch& batch);
Score multilabel_score(const torch::Tensor& probs, const Batch& batch);
Score token_argmax_score(const torch::Tensor& logits, const Batch& batch);

}  // namespace vdp
