// The header of an llm.c token shard: 256 little-endian int32 (magic 20240520, version 1, token
// count), then the tokens as uint16. Parsed without LibTorch so the fuzz target builds it alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace vdp {

constexpr int32_t kTokenShardMagic = 20240520;
constexpr size_t kTokenShardHeaderBytes = 256 * 4;

// The number of tokens the `size` bytes of shard `name` hold, after checking the magic, the version
// and that the count fills the file exactly. Throws vdp::UserError with one line.
int64_t parse_token_shard_header(const unsigned char* data, size_t size, const std::string& name);

}  // namespace vdp
