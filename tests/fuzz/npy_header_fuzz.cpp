// libFuzzer target: the .npy header parser. Accepted inputs must hold exactly the bytes their header
// declares, with a supported item size.
#include <cstdint>
#include <cstdlib>

#include "vdp/core/error.h"
#include "vdp/data/npy_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const vdp::NpyHeader h = vdp::parse_npy_header(data, size, "fuzz");
    uint64_t total = 1;
    for (int64_t d : h.shape) total *= static_cast<uint64_t>(d);
    if (h.item_size < 1 || h.item_size > 8 || h.data_offset + total * static_cast<uint64_t>(h.item_size) != size)
      std::abort();
  } catch (const vdp::UserError&) {
  }
  return 0;
}
