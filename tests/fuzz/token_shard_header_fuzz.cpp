// libFuzzer target: the llm.c token shard header parser. Accepted inputs must hold exactly the
// tokens their header declares.
#include <cstdint>
#include <cstdlib>

#include "vdp/core/error.h"
#include "vdp/data/token_shard_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const int64_t count = vdp::parse_token_shard_header(data, size, "fuzz");
    if (count < 0 || vdp::kTokenShardHeaderBytes + 2 * static_cast<uint64_t>(count) != size) std::abort();
  } catch (const vdp::UserError&) {
  }
  return 0;
}
