#include "vdp/grad/reducer.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <map>

#include "vdp/core/error.h"

namespace vdp {

WindowReducer::WindowReducer(FlatGrads& flat, const std::vector<torch::Tensor>& params,
                             std::shared_ptr<Communicator> comm, int64_t bucket_bytes, bool overlap)
    : comm_(std::move(comm)), overlap_(overlap) {
  VDP_ASSERT(bucket_bytes > 0);
  // Parameters of each buffer in layout order.
  // Every buffer, including a scalar buffer without parameters (flat_grads.h), gets buckets.
  std::vector<std::vector<size_t>> by_group(flat.buffers().size());
  for (size_t i = 0; i < params.size(); ++i) by_group[flat.slot(i).group].push_back(i);
  bucket_of_.resize(params.size());
  for (size_t g = 0; g < by_group.size(); ++g) {
    auto& members = by_group[g];
    std::sort(members.begin(), members.end(),
              [&](size_t a, size_t b) { return flat.slot(a).offset < flat.slot(b).offset; });
    const torch::Tensor& buf = flat.buffers()[g];
    const int64_t elem = static_cast<int64_t>(buf.element_size());
    int64_t start = 0, end = 0;
    size_t count = 0;
    auto close = [&](int64_t stop) {
      Bucket b;
      b.view = buf.narrow(0, start, stop - start);
      b.params = count;
      buckets_.push_back(std::move(b));
      start = stop, count = 0;
    };
    for (size_t i : members) {
      const GradSlot& s = flat.slot(i);
      if (count > 0 && (s.offset + s.numel - start) * elem > bucket_bytes) close(end);
      bucket_of_[i] = buckets_.size();
      ++count;
      end = s.offset + s.numel;
    }
    close(buf.numel());  // the last bucket of a buffer runs to its end (the scalars)
  }
  if (!overlap_) return;
  for (size_t i = 0; i < params.size(); ++i) {
    auto acc = torch::autograd::impl::grad_accumulator(params[i]);
    VDP_ASSERT(acc != nullptr, "parameter ", i, " has no gradient accumulator");
    hook_keys_.push_back(acc->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [this, i](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          mark_variable_ready(i);
          return outputs;
        })));
    accumulators_.push_back(std::move(acc));
  }
}

WindowReducer::~WindowReducer() {
  for (size_t i = 0; i < accumulators_.size(); ++i) accumulators_[i]->del_post_hook(hook_keys_[i]);
}

int64_t WindowReducer::bytes() const {
  int64_t n = 0;
  for (const auto& b : buckets_) n += b.view.numel() * static_cast<int64_t>(b.view.element_size());
  return n;
}

void WindowReducer::arm() {
  if (!overlap_) return;
  for (auto& b : buckets_) b.pending = b.params;
  next_ = 0;
  armed_ = true;
}

bool WindowReducer::disarm() {
  std::lock_guard<std::mutex> lock(mu_);
  if (armed_ && next_ > 0) return false;  // a bucket's reduction is in flight
  armed_ = false;
  return true;
}

void WindowReducer::mark_variable_ready(size_t param) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!armed_) return;  // a non-final micro-step: gradients keep accumulating, nothing is sent
  Bucket& b = buckets_[bucket_of_[param]];
  VDP_ASSERT(b.pending > 0, "parameter ", param, " became ready twice in one backward");
  if (--b.pending == 0) launch_in_order();
}

void WindowReducer::launch_in_order() {
  while (next_ < buckets_.size() && buckets_[next_].pending == 0) {
    buckets_[next_].work = comm_->all_reduce_sum_async(buckets_[next_].view);
    ++next_;
  }
}

void WindowReducer::finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (overlap_ && armed_) {
    // Whatever the hooks did not start (unused parameters, an empty last slot) goes now, in order.
    for (size_t b = next_; b < buckets_.size(); ++b) buckets_[b].pending = 0;
    launch_in_order();
    for (auto& b : buckets_) {
      if (b.work) b.work->wait();
      b.work.reset();
    }
    armed_ = false;
    return;
  }
  for (auto& b : buckets_) comm_->all_reduce_sum(b.view);
}

}  // namespace vdp
