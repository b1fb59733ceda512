// NumPy .npy files (format versions 1.0, 2.0 and 3.0), read memory-mapped: the tensor views the
// file's pages, nothing is copied until a batch is gathered. Little-endian, C order; dtypes bool,
// int8/16/32/64, uint8/16/32/64, float16/32/64. Any other file is one line naming the problem.
#pragma once

#include <torch/types.h>

#include "vdp/data/dataset.h"
#include "vdp/data/mapped_file.h"
#include "vdp/data/npy_header.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace vdp {

// An array mapped from its file: the tensor views the file's pages (data_offset bytes into it).
struct NpyArray {
  torch::Tensor data;
  std::shared_ptr<MappedFile> file;  // null for an absent optional array
  size_t offset = 0;
};

// The array in `path`, memory-mapped read-only through a MappedFile (data/mapped_file.h: a file
// changed under the running job is an IoError naming it, not a SIGBUS); the map lives as long as the
// tensor, its views and the NpyArray.
NpyArray map_npy(const std::string& path);
torch::Tensor load_npy(const std::string& path);  // map_npy(path).data

// Arrays as a dataset: rows of x, y and the optional mask, gathered per batch from the maps. Floating
// and bool arrays arrive in `dtype`, integer ones as int64, uint8 inputs (pixels) in `dtype`.
class NpyDataset : public Dataset {
 public:
  NpyDataset(NpyArray x, NpyArray y, NpyArray mask, torch::ScalarType dtype);
  int64_t size() const override { return x_.data.size(0); }
  Batch get(const std::vector<int64_t>& ids) const override;
  const torch::Tensor& targets() const { return y_.data; }  // y as mapped, in its file's dtype

 private:
  NpyArray x_, y_, mask_;
  torch::ScalarType dtype_;
};

}  // namespace vdp
