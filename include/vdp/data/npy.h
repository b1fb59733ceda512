// NumPy .npy files (format versions 1.0, 2.0 and 3.0), read memory-mapped: the tensor views the
// file's pages, nothing is copied until a batch is gathered. Little-endian, C order; dtypes bool,
// int8/16/32/64, uint8/16/32/64, float16/32/64. Any other file is one line naming the problem.
#pragma once

#include <torch/types.h>

#include "vdp/data/dataset.h"
#include "vdp/data/npy_header.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace vdp {

// The array in `path`, memory-mapped read-only (the mapping lives as long as the tensor and its views).
torch::Tensor load_npy(const std::string& path);

// Arrays as a dataset: rows of x, y and the optional mask, gathered per batch from the maps. Floating
// and bool arrays arrive in `dtype`, integer ones as int64, uint8 inputs (pixels) in `dtype`.
class NpyDataset : public Dataset {
 public:
  NpyDataset(torch::Tensor x, torch::Tensor y, torch::Tensor mask, torch::ScalarType dtype);
  int64_t size() const override { return x_.size(0); }
  Batch get(const std::vector<int64_t>& ids) const override;
  const torch::Tensor& targets() const { return y_; }  // y as mapped, in its file's dtype

 private:
  torch::Tensor x_, y_, mask_;
  torch::ScalarType dtype_;
};

}  // namespace vdp
