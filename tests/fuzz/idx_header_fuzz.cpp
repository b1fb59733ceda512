// libFuzzer target: the IDX header parser, for both ranks the reader asks for. Accepted inputs
// must hold exactly the bytes their header declares.
#include <cstdint>
#include <cstdlib>

#include "vdp/core/error.h"
#include "vdp/data/idx_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (int rank : {1, 3}) {
    try {
      const vdp::IdxHeader h = vdp::parse_idx_header(data, size, rank, "fuzz");
      uint64_t total = 1;
      for (int64_t d : h.dims) total *= static_cast<uint64_t>(d);
      if (h.data_offset + total != size) std::abort();
    } catch (const vdp::UserError&) {
    }
  }
  return 0;
}
