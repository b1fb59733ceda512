// Reader for the IDX format of (Fashion-)MNIST, read straight from the .gz files. Every header field
// and the data length are checked: a truncated or corrupt file is a vdp::UserError naming the file
// and what is wrong, never a crash or a silently short dataset.
#pragma once

#include <torch/types.h>

#include <string>

namespace vdp {

// IDX type 0x08 (unsigned byte) arrays. `expected_rank` is 1 for labels, 3 for images.
// Returns a uint8 tensor of the stored dimensions.
torch::Tensor read_idx_gz(const std::string& path, int expected_rank);

// The same from bytes already in memory (uncompressed), for tests and fuzzing; `name` is used in
// messages.
torch::Tensor parse_idx(const unsigned char* data, size_t size, int expected_rank, const std::string& name);

}  // namespace vdp
