// libFuzzer target: the safetensors header parser must reject any input with vdp::UserError or
// accept it with every tensor inside the file; a crash, a hang, another exception or an accepted
// range outside the input is a finding.
#include <cstdint>
#include <cstdlib>

#include "vdp/ckpt/safetensors_header.h"
#include "vdp/core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const vdp::SafetensorsHeader h = vdp::parse_safetensors_header(data, size, "fuzz");
    for (const auto& t : h.tensors)
      if (h.data_offset + t.end > size || t.begin > t.end) std::abort();
  } catch (const vdp::UserError&) {
  }
  return 0;
}
