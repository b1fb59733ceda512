// The header of a NumPy .npy file (format versions 1.0, 2.0 and 3.0), parsed without LibTorch so the
// fuzz target can build it alone (tests/fuzz). Little-endian (or byte-order free), C order; dtypes
// bool, int8-64, uint8-64, float16/32/64.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace vdp {

struct NpyHeader {
  std::string descr;        // as written, e.g. "<f4"
  int item_size = 0;        // bytes per element
  std::vector<int64_t> shape;
  size_t data_offset = 0;   // bytes before the array data
};

// Parses and checks the header of `size` bytes of an .npy file named `name` (magic, version, the
// header dictionary, dtype, order, shape, and that the data fills the rest of the file exactly).
// Throws vdp::UserError with one line.
NpyHeader parse_npy_header(const unsigned char* data, size_t size, const std::string& name);

}  // namespace vdp
