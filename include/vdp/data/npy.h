// NumPy .npy files (format versions 1.0, 2.0 and 3.0), read memory-mapped: the tensor views the
// file's pages, nothing is copied until a batch is gathered. Little-endian, C order; dtypes bool,
// int8/16/32/64, uint8/16/32/64, float16/32/64. Any other file is one line naming the problem.
#pragma once

#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace vdp {

struct NpyHeader {
  torch::ScalarType dtype = torch::kFloat32;
  std::vector<int64_t> shape;
  size_t data_offset = 0;  // bytes before the array data
  std::string descr;       // as written, e.g. "<f4"
};

// Parses and checks the header of `size` bytes of an .npy file named `name` (magic, version, the
// header dictionary, dtype, order, shape, and that the data fills the rest of the file exactly).
// Throws vdp::UserError.
NpyHeader parse_npy_header(const unsigned char* data, size_t size, const std::string& name);

// The array in `path`, memory-mapped read-only (the mapping lives as long as the tensor and its views).
torch::Tensor load_npy(const std::string& path);

}  // namespace vdp
