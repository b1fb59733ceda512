// The IDX header parser on its own (no LibTorch), for the reader and the fuzz target: magic, type
// (unsigned byte only), rank, non-zero dimensions, a sane total size, and a file length that
// matches the header exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace vdp {

struct IdxHeader {
  std::vector<int64_t> dims;
  size_t data_offset = 0;  // the data is the rest of the file: exactly prod(dims) bytes
};

// Throws vdp::UserError naming `name` and the problem.
IdxHeader parse_idx_header(const unsigned char* data, size_t size, int expected_rank, const std::string& name);

}  // namespace vdp
