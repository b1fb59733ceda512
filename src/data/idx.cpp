#include "vdp/data/idx.h"

#include <zlib.h>

#include <ATen/ATen.h>

#include <cstring>
#include <vector>

#include "vdp/core/error.h"
#include "vdp/data/idx_header.h"

namespace vdp {
namespace {

// A gzip stream that inflates beyond this is no IDX file of ours.
constexpr uint64_t kMaxIdxBytes = uint64_t{1} << 32;

std::vector<unsigned char> gunzip_file(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  VDP_CHECK(f != nullptr, "cannot open '", path, "' (check the path and permissions; Fashion-MNIST ships in the "
            "Debian package dataset-fashion-mnist)");
  std::vector<unsigned char> out;
  std::vector<unsigned char> chunk(1 << 20);
  for (;;) {
    int n = gzread(f, chunk.data(), static_cast<unsigned>(chunk.size()));
    if (n < 0) {
      int errnum = 0;
      std::string msg = gzerror(f, &errnum);
      gzclose(f);
      VDP_FAIL("'", path, "' is not a valid gzip file or is truncated (", msg,
               "); reinstall dataset-fashion-mnist or replace the file");
    }
    if (n == 0) break;
    out.insert(out.end(), chunk.begin(), chunk.begin() + n);
    VDP_CHECK(out.size() <= kMaxIdxBytes + 16, "'", path, "' decompresses to more than 4 GiB; not an IDX file");
  }
  // gzread returns 0 both at a clean end and when the compressed stream was cut short: ask zlib.
  int errnum = 0;
  const char* msg = gzerror(f, &errnum);
  std::string message = msg ? msg : "";
  gzclose(f);
  VDP_CHECK(errnum == Z_OK || errnum == Z_STREAM_END, "'", path, "' is truncated or corrupt (zlib: ", message,
            "); reinstall dataset-fashion-mnist or replace the file");
  return out;
}

}  // namespace

torch::Tensor parse_idx(const unsigned char* data, size_t size, int expected_rank, const std::string& name) {
  const IdxHeader h = parse_idx_header(data, size, expected_rank, name);
  auto t = torch::empty(h.dims, torch::kUInt8);
  std::memcpy(t.data_ptr<uint8_t>(), data + h.data_offset, size - h.data_offset);
  return t;
}

torch::Tensor read_idx_gz(const std::string& path, int expected_rank) {
  std::vector<unsigned char> bytes = gunzip_file(path);
  return parse_idx(bytes.data(), bytes.size(), expected_rank, path);
}

}  // namespace vdp
