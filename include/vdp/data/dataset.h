// Datasets hand out batches assembled from index lists (the plan's slots). Everything stays on the
// CPU here; the trainer moves a batch to its device.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace vdp {

struct Batch {
  torch::Tensor x;     // [n, ...] inputs (float32/float64, or int64 tokens)
  torch::Tensor y;     // targets: class ids [n], multi-labels [n, L], values [n, D] or tokens [n, T]
  torch::Tensor mask;  // sequence tasks: [n, T], 1 where a token is real; undefined otherwise
  int64_t size() const { return x.defined() ? x.size(0) : 0; }
  Batch to(const torch::Device& device) const;
  // Rows [start, start + n) of every tensor, as views (no copy).
  Batch rows(int64_t start, int64_t n) const;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // The samples `indices` (each in [0, size())) as one batch, in the given order. An empty list gives
  // a batch with 0 rows and the right trailing shape. The trainer's data producer (data/loader.h)
  // calls it on a background thread while training and evaluation run: it must be safe to call
  // concurrently with itself on another dataset and with the model (a read, like index_select).
  virtual Batch get(const std::vector<int64_t>& indices) const = 0;
};

// A dataset held as whole tensors; get() is an index_select on the first dimension.
class TensorDataset : public Dataset {
 public:
  TensorDataset(torch::Tensor x, torch::Tensor y, torch::Tensor mask = {});
  int64_t size() const override { return x_.size(0); }
  Batch get(const std::vector<int64_t>& indices) const override;

 private:
  torch::Tensor x_, y_, mask_;
};

}  // namespace vdp
