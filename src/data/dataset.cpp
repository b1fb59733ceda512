#include "vdp/data/dataset.h"

#include <ATen/ATen.h>

#include "vdp/core/error.h"

namespace vdp {

Batch Batch::to(const torch::Device& device) const {
  Batch b;
  b.x = x.defined() ? x.to(device, /*non_blocking=*/true) : x;
  b.y = y.defined() ? y.to(device, /*non_blocking=*/true) : y;
  b.mask = mask.defined() ? mask.to(device, /*non_blocking=*/true) : mask;
  return b;
}

Batch Batch::rows(int64_t start, int64_t n) const {
  VDP_ASSERT(start >= 0 && n >= 0 && start + n <= size(), "rows ", start, "+", n, " of a batch of ", size());
  auto part = [&](const torch::Tensor& t) { return t.defined() ? t.narrow(0, start, n) : t; };
  return {part(x), part(y), part(mask)};
}

TensorDataset::TensorDataset(torch::Tensor x, torch::Tensor y, torch::Tensor mask)
    : x_(std::move(x)), y_(std::move(y)), mask_(std::move(mask)) {
  VDP_ASSERT(x_.size(0) == y_.size(0), "x and y disagree on the sample count");
  VDP_ASSERT(!mask_.defined() || mask_.size(0) == x_.size(0), "mask and x disagree on the sample count");
}

Batch TensorDataset::get(const std::vector<int64_t>& indices) const {
  for (int64_t i : indices) VDP_ASSERT(i >= 0 && i < size(), "sample index ", i, " out of range");
  auto idx = torch::from_blob(const_cast<int64_t*>(indices.data()), {static_cast<int64_t>(indices.size())},
                              torch::kInt64);
  Batch b;
  b.x = x_.index_select(0, idx);
  b.y = y_.index_select(0, idx);
  if (mask_.defined()) b.mask = mask_.index_select(0, idx);
  return b;
}

}  // namespace vdp
