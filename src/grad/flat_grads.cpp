#include "vdp/grad/flat_grads.h"

#include <ATen/ATen.h>

#include <map>

#include "vdp/core/error.h"

namespace vdp {
namespace {
constexpr int64_t kTailScalars = 3;  // loss sum, item count, stop votes
}  // namespace

FlatGrads::FlatGrads(const std::vector<torch::Tensor>& params, const std::vector<std::string>& names, int64_t extra)
    : params_(params), names_(names) {
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
  for (size_t g = 0; g < kinds.size(); ++g) {
    int64_t n = 0;
    for (size_t i : members[g]) n += params[i].numel();
    const int64_t tail = g == 0 ? kTailScalars + extra : 0;
    auto buf = torch::zeros({n + tail}, torch::TensorOptions().device(kinds[g].first).dtype(kinds[g].second));
    int64_t off = 0;
    for (auto it = members[g].rbegin(); it != members[g].rend(); ++it) {
      torch::Tensor p = params[*it];
      p.mutable_grad() = buf.narrow(0, off, p.numel()).view(p.sizes());
      slots_[*it] = {g, off, p.numel()};
      off += p.numel();
    }
    buffers_.push_back(buf);
    grads_.push_back(buf.narrow(0, 0, n));
    if (g == 0) {
      tail_ = buf.narrow(0, n, kTailScalars);
      extra_ = buf.narrow(0, n + kTailScalars, extra);
      loss_sum_ = tail_[0];
      count_ = tail_[1];
      stop_ = tail_[2];
    }
  }
}

void FlatGrads::zero() {
  for (auto& b : buffers_) b.zero_();
}

void FlatGrads::add_loss(const LossSum& loss) {
  loss_sum_.add_(loss.sum.detach().to(tail_.scalar_type()));
  count_.add_(loss.count.to(tail_.scalar_type()));
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
