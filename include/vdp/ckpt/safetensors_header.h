// The safetensors header parser on its own: no LibTorch, so the fuzz target can build it with
// clang and libFuzzer. It checks everything the header claims against the file's size before any
// tensor is made: header length, JSON shape, dtypes, shapes (no absurd element counts), offsets
// inside the data area, and that the tensors tile the data area with no overlap and no gap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace vdp {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;        // "F32", "I64", ...
  size_t element_size = 0;  // bytes
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range in the data area
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> tensors;  // in header order
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // where the data area starts in the file
};

// Throws vdp::UserError naming `name` and the problem.
SafetensorsHeader parse_safetensors_header(const uint8_t* data, size_t size, const std::string& name);

// Bytes per element of a safetensors dtype name; 0 if vdp does not support it.
size_t safetensors_element_size(const std::string& dtype);

}  // namespace vdp
