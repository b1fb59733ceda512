#include "vdp/data/idx_header.h"

#include "vdp/core/error.h"

namespace vdp {
namespace {

// Upper bound on what an IDX file of this kind may claim, so a corrupt header cannot ask for an
// absurd allocation before we notice the data is missing.
constexpr uint64_t kMaxIdxBytes = uint64_t{1} << 32;

uint32_t big_endian_u32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

}  // namespace

IdxHeader parse_idx_header(const unsigned char* data, size_t size, int expected_rank, const std::string& name) {
  VDP_CHECK(size >= 4, "'", name, "' is too short to be an IDX file (", size, " bytes)");
  VDP_CHECK(data[0] == 0 && data[1] == 0, "'", name, "' is not an IDX file (bad magic number)");
  VDP_CHECK(data[2] == 0x08, "'", name, "' holds IDX type 0x", std::hex, int(data[2]), std::dec,
            "; vdp reads unsigned-byte (0x08) arrays only");
  const int rank = data[3];
  VDP_CHECK(rank == expected_rank, "'", name, "' has ", rank, " dimensions where ", expected_rank,
            " were expected (images have 3, labels 1: check that the files are not swapped)");
  const size_t header = 4 + 4 * static_cast<size_t>(rank);
  VDP_CHECK(size >= header, "'", name, "' is truncated inside its header");
  std::vector<int64_t> dims;
  uint64_t total = 1;
  for (int i = 0; i < rank; ++i) {
    uint32_t d = big_endian_u32(data + 4 + 4 * i);
    VDP_CHECK(d >= 1, "'", name, "' declares dimension ", i, " of size 0");
    total *= d;
    VDP_CHECK(total <= kMaxIdxBytes, "'", name, "' declares an absurd size; the header is corrupt");
    dims.push_back(static_cast<int64_t>(d));
  }
  VDP_CHECK(size - header == total, "'", name, "' holds ", size - header, " data bytes but its header declares ",
            total, (size - header < total ? " (truncated file)" : " (trailing garbage)"),
            "; reinstall dataset-fashion-mnist or replace the file");
  return IdxHeader{dims, header};
}

}  // namespace vdp
