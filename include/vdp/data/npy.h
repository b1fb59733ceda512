// NumPy .npy files (format versions 1.0, 2.0 and 3.0), read memory-mapped: the tensor views the
// file's pages, nothing is copied until a batch is gathered. Little-endian, C order; dtypes bool,
// int8/16/32/64, uint8/16/32/64, float16/32/64. Any other file is one line naming the problem.
#pragma once

#include <torch/types.h>

#include "vdp/data/npy_header.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace vdp {

// The array in `path`, memory-mapped read-only (the mapping lives as long as the tensor and its views).
torch::Tensor load_npy(const std::string& path);

}  // namespace vdp
