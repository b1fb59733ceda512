#include "vdp/grad/flat_grads.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <map>

#include "vdp/core/error.h"

namespace vdp {
namespace {
// Note [exact window totals]: the scalar region holds [loss sum hi, lo, item count hi, lo, stop votes]. The
// window's loss sum and count are accumulated locally in float64 and split before the reduction:
// sum = hi + lo (hi its float32 rounding, lo the rest), count = 4096·hi + lo with lo < 4096. In a
// float32 scalar region each part then sums exactly over ranks while Σlo < 2^24 (W ≤ 4096) and Σhi < 2^24
// (counts below 2^36 ≈ 6.9e10 items per window), where a single float32 count is exact only to
// 2^24 items. A scalar region of a float16/bfloat16 model would keep 11 or 8 bits: such models get a float32
// scalar buffer of their own (one more bucket in the window's reduction).
constexpr int64_t kScalars = 5;
constexpr double kCountBase = 4096;

bool wide_enough(torch::ScalarType t) { return t == torch::kFloat || t == torch::kDouble; }
}  // namespace

FlatGrads::FlatGrads(const std::vector<torch::Tensor>& params, const std::vector<std::string>& names, int64_t extra,
                     int64_t multiple)
    : params_(params), names_(names) {
  VDP_ASSERT(multiple >= 1);
  VDP_ASSERT(params.size() == names.size());
  VDP_CHECK(!params.empty(), "the model has no trainable parameters; nothing to train");
  // Group parameters by (device, dtype), keeping first-appearance order so every rank lays out the
  // same buffers in the same order.
  std::vector<std::pair<torch::Device, torch::ScalarType>> kinds;
  std::vector<std::vector<size_t>> members;
  for (size_t i = 0; i < params.size(); ++i) {
    std::pair<torch::Device, torch::ScalarType> kind{params[i].device(), params[i].scalar_type()};
    size_t g = 0;
    while (g < kinds.size() && kinds[g] != kind) ++g;
    if (g == kinds.size()) kinds.push_back(kind), members.emplace_back();
    members[g].push_back(i);
  }
  slots_.resize(params.size());
  views_.resize(params.size());
  // The scalar region rides at the end of the first buffer when its dtype keeps it exact, else apart.
  const bool own_scalars = !wide_enough(kinds[0].second);
  for (size_t g = 0; g < kinds.size(); ++g) {
    int64_t n = 0;
    for (size_t i : members[g]) n += params[i].numel();
    const int64_t scalars = g == 0 && !own_scalars ? kScalars + extra : 0;
    const int64_t padded = (n + multiple - 1) / multiple * multiple;
    auto buf = torch::zeros({padded + scalars}, torch::TensorOptions().device(kinds[g].first).dtype(kinds[g].second));
    int64_t off = 0;
    for (auto it = members[g].rbegin(); it != members[g].rend(); ++it) {
      torch::Tensor p = params[*it];
      p.mutable_grad() = buf.narrow(0, off, p.numel()).view(p.sizes());
      views_[*it] = p.grad();
      slots_[*it] = {g, off, p.numel()};
      off += p.numel();
    }
    buffers_.push_back(buf);
    grads_.push_back(buf.narrow(0, 0, n));
    padded_.push_back(buf.narrow(0, 0, padded));
    if (g == 0 && !own_scalars) scalars_ = buf.narrow(0, padded, kScalars + extra);
  }
  if (own_scalars) {
    buffers_.push_back(torch::zeros({kScalars + extra}, torch::TensorOptions().device(kinds[0].first).dtype(torch::kFloat)));
    scalars_ = buffers_.back();
  }
  region_ = scalars_;
  extra_ = scalars_.narrow(0, kScalars, extra);
  scalars_ = scalars_.narrow(0, 0, kScalars);
  stop_ = scalars_[4];
  const auto f64 = torch::TensorOptions().device(kinds[0].first).dtype(torch::kDouble);
  acc_sum_ = torch::zeros({}, f64);
  acc_count_ = torch::zeros({}, f64);
}

FlatGrads::~FlatGrads() = default;

void FlatGrads::zero() {
  for (auto& b : buffers_) b.zero_();
  acc_sum_.zero_();
  acc_count_.zero_();
}

void FlatGrads::add_loss(const LossSum& loss) {
  // An in-place add into a float64 tensor widens its operand itself: one kernel each, the same
  // value as converting first; under no_grad so that nothing is recorded for autograd.
  torch::NoGradGuard no_grad;
  acc_sum_.add_(loss.sum);
  acc_count_.add_(loss.count);
}

void FlatGrads::stage_loss() {
  // Note [exact window totals]. Device operations only: no host synchronization.
  const auto dt = scalars_.scalar_type();
  const torch::Tensor sum_hi = acc_sum_.to(dt);
  const torch::Tensor count_hi = (acc_count_ / kCountBase).floor();
  scalars_[0].copy_(sum_hi);
  scalars_[1].copy_(acc_sum_ - sum_hi.to(torch::kDouble));
  scalars_[2].copy_(count_hi);
  scalars_[3].copy_(acc_count_ - count_hi * kCountBase);
}

torch::Tensor FlatGrads::totals_tensor() const {
  // Note [exact window totals]. Device operations only: no host synchronization.
  const torch::Tensor t = scalars_.to(torch::kDouble);
  return at::stack({t[0] + t[1], t[2] * kCountBase + t[3], t[4]});
}

void FlatGrads::set_stop(bool stop) { stop_.fill_(stop ? 1 : 0); }

void FlatGrads::check_views() const {
  for (size_t i = 0; i < params_.size(); ++i) {
    const torch::Tensor& g = params_[i].grad();
    bool inside = false;
    if (g.defined())
      for (const auto& b : buffers_) inside |= g.storage().is_alias_of(b.storage());
    VDP_ASSERT(inside, "the gradient of parameter '", names_[i],
               "' no longer aliases vdp's flat buffer (something replaced .grad, e.g. zero_grad(set_to_none)); "
               "let vdp zero the gradients");
  }
}

}  // namespace vdp
