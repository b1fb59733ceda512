#include "vdp/task/loss.h"

#include <ATen/ATen.h>

#include <sstream>

#include "vdp/core/error.h"

namespace vdp {
namespace {
torch::Tensor count_of(int64_t n, const torch::Tensor& like) {
  return torch::full({}, static_cast<double>(n), like.options().requires_grad(false));
}

std::string shape_text(const torch::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

// No loss broadcasts prediction against target (a [n, 1] prediction minus a [n] target would be
// [n, n]): the shapes must be equal, with one rule: a target of shape [n] meets a single-output
// prediction [n, 1] as [n, 1] (NumPy's usual layout for one value per sample).
torch::Tensor target_like(const torch::Tensor& pred, const torch::Tensor& y, const char* loss) {
  if (pred.sizes() == y.sizes()) return y;
  if (y.dim() == 1 && pred.dim() == 2 && pred.size(1) == 1 && pred.size(0) == y.size(0)) return y.unsqueeze(1);
  VDP_FAIL("the ", loss, " loss got a prediction of shape ", shape_text(pred), " and a target of shape ",
           shape_text(y), ": they must be equal (a target [n] is taken as [n, 1] for a single-output model); "
           "reshape the targets or change the model's output");
}

// The sample count of the prediction matches the batch's, one row per sample.
void check_rows(const torch::Tensor& out, const Batch& b, const char* loss) {
  VDP_CHECK(out.dim() >= 1 && out.size(0) == b.size(), "the ", loss, " loss got a prediction of shape ",
            shape_text(out), " for ", b.size(), " samples: the model must return one row per sample");
}
}  // namespace

LossSum cross_entropy_sum(const torch::Tensor& logits, const Batch& b) {
  check_rows(logits, b, "cross-entropy");
  VDP_CHECK(logits.dim() == 2 && b.y.dim() == 1, "the cross-entropy loss got logits of shape ", shape_text(logits),
            " and targets of shape ", shape_text(b.y), ": it takes logits [n, classes] and class ids [n]");
  auto logp = at::log_softmax(logits, 1);
  return {at::nll_loss(logp, b.y, {}, at::Reduction::Sum), count_of(b.size(), logits)};
}

LossSum bce_sum(const torch::Tensor& probs, const Batch& b) {
  check_rows(probs, b, "bce");
  auto per_label = at::binary_cross_entropy(probs, target_like(probs, b.y, "bce"), {}, at::Reduction::None);
  return {per_label.reshape({b.size(), -1}).mean(1).sum(), count_of(b.size(), probs)};
}

LossSum mse_sum(const torch::Tensor& pred, const Batch& b) {
  check_rows(pred, b, "mse");
  return {(pred - target_like(pred, b.y, "mse")).pow(2).reshape({b.size(), -1}).mean(1).sum(), count_of(b.size(), pred)};
}

LossSum token_cross_entropy_sum(const torch::Tensor& logits, const Batch& b) {
  check_rows(logits, b, "token-cross-entropy");
  VDP_CHECK(logits.dim() == 3 && b.y.dim() == 2 && logits.size(1) == b.y.size(1),
            "the token-cross-entropy loss got logits of shape ", shape_text(logits), " and targets of shape ",
            shape_text(b.y), ": it takes logits [n, T, vocabulary] and tokens [n, T]");
  auto per_token = at::nll_loss(at::log_softmax(logits.flatten(0, 1), 1), b.y.flatten(), {}, at::Reduction::None);
  if (!b.mask.defined()) return {per_token.sum(), count_of(per_token.numel(), logits)};  // every token counts
  auto mask = b.mask.flatten().to(logits.scalar_type());
  return {(per_token * mask).sum(), mask.sum()};
}

LossSum bce_logits_sum(const torch::Tensor& logits, const Batch& b) {
  check_rows(logits, b, "bce");
  auto per_label =
      at::binary_cross_entropy_with_logits(logits, target_like(logits, b.y, "bce"), {}, {}, at::Reduction::None);
  return {per_label.reshape({b.size(), -1}).mean(1).sum(), count_of(b.size(), logits)};
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
