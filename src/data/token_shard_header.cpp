#include "vdp/data/token_shard_header.h"

#include <cstring>

#include "vdp/core/error.h"

namespace vdp {

int64_t parse_token_shard_header(const unsigned char* data, size_t size, const std::string& name) {
  VDP_CHECK(size >= kTokenShardHeaderBytes, "'", name, "' is not an llm.c token shard (", size,
            " bytes; the header alone is 1024)");
  auto word = [&](int i) {
    uint32_t v = 0;
    for (int b = 3; b >= 0; --b) v = (v << 8) | data[4 * i + b];  // little-endian
    return static_cast<int32_t>(v);
  };
  VDP_CHECK(word(0) == kTokenShardMagic, "'", name, "' is not an llm.c token shard (magic ", word(0),
            ", expected 20240520; make shards with launch/make_shards.py or llm.c's scripts)");
  VDP_CHECK(word(1) == 1, "'", name, "': token shard version ", word(1), " is not supported (1: uint16 tokens)");
  const int64_t count = word(2);
  const uint64_t room = (size - kTokenShardHeaderBytes) / 2;
  VDP_CHECK((size - kTokenShardHeaderBytes) % 2 == 0, "'", name, "' has ", size - kTokenShardHeaderBytes,
            " bytes of tokens, an odd number (tokens are 2 bytes each): the file is truncated or damaged");
  VDP_CHECK(count >= 0 && static_cast<uint64_t>(count) == room, "'", name, "' says it holds ", count,
            " tokens but has room for ", room, ": the file is truncated or damaged");
  return count;
}

}  // namespace vdp
