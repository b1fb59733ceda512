#include "vdp/task/loss.h"

#include <ATen/ATen.h>

namespace vdp {
namespace {
torch::Tensor count_of(int64_t n, const torch::Tensor& like) {
  return torch::full({}, static_cast<double>(n), like.options().requires_grad(false));
}
}  // namespace

LossSum cross_entropy_sum(const torch::Tensor& logits, const Batch& b) {
  auto logp = at::log_softmax(logits, 1);
  return {at::nll_loss(logp, b.y, {}, at::Reduction::Sum), count_of(b.size(), logits)};
}

LossSum bce_sum(const torch::Tensor& probs, const Batch& b) {
  auto per_label = at::binary_cross_entropy(probs, b.y, {}, at::Reduction::None);
  return {per_label.flatten(1).mean(1).sum(), count_of(b.size(), probs)};
}

LossSum mse_sum(const torch::Tensor& pred, const Batch& b) {
  return {(pred - b.y).pow(2).mean(1).sum(), count_of(b.size(), pred)};
}

LossSum token_cross_entropy_sum(const torch::Tensor& logits, const Batch& b) {
  auto per_token = at::nll_loss(at::log_softmax(logits.flatten(0, 1), 1), b.y.flatten(), {}, at::Reduction::None);
  if (!b.mask.defined()) return {per_token.sum(), count_of(per_token.numel(), logits)};  // every token counts
  auto mask = b.mask.flatten().to(logits.scalar_type());
  return {(per_token * mask).sum(), mask.sum()};
}

LossSum bce_logits_sum(const torch::Tensor& logits, const Batch& b) {
  auto per_label = at::binary_cross_entropy_with_logits(logits, b.y, {}, {}, at::Reduction::None);
  return {per_label.flatten(1).mean(1).sum(), count_of(b.size(), logits)};
}

Score argmax_score(const torch::Tensor& logits, const Batch& b) {
  return {logits.argmax(1).eq(b.y).sum().to(torch::kInt64), torch::full({}, b.size(), torch::kInt64)};
}

Score multilabel_score(const torch::Tensor& probs, const Batch& b) {
  return {probs.gt(0.5).eq(b.y.gt(0.5)).sum().to(torch::kInt64), torch::full({}, b.y.numel(), torch::kInt64)};
}

Score token_argmax_score(const torch::Tensor& logits, const Batch& b) {
  auto hit = logits.argmax(2).eq(b.y).logical_and(b.mask.to(torch::kBool));
  return {hit.sum().to(torch::kInt64), b.mask.sum().to(torch::kInt64)};
}

}  // namespace vdp
