#include "vdp/data/npy.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>

#include "vdp/core/error.h"
#include "vdp/data/datasets.h"

namespace vdp {
namespace {

torch::ScalarType dtype_of(const std::string& descr) {
  static const std::pair<const char*, torch::ScalarType> kinds[] = {
      {"b1", torch::kBool},   {"i1", torch::kInt8},    {"u1", torch::kUInt8},   {"i2", torch::kInt16},
      {"u2", torch::kUInt16}, {"i4", torch::kInt32},   {"u4", torch::kUInt32},  {"i8", torch::kInt64},
      {"u8", torch::kUInt64}, {"f2", torch::kFloat16}, {"f4", torch::kFloat32}, {"f8", torch::kFloat64}};
  for (const auto& [k, t] : kinds)
    if (descr.substr(1) == k) return t;
  VDP_ASSERT(false, "dtype ", descr, " passed the header check but has no tensor type");
  return torch::kFloat32;
}

}  // namespace

torch::Tensor load_npy(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  VDP_CHECK(fd >= 0, "cannot open '", path, "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    VDP_FAIL("'", path, "' is not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 10) {
    ::close(fd);
    VDP_FAIL("'", path, "' is not a .npy file (", size, " bytes)");
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  VDP_CHECK_IO(map != MAP_FAILED, "cannot map '", path, "': ", std::strerror(errno));
  NpyHeader h;
  try {
    h = parse_npy_header(static_cast<const unsigned char*>(map), size, path);
  } catch (...) {
    ::munmap(map, size);
    throw;
  }
  void* start = static_cast<char*>(map) + h.data_offset;
  // Read-only pages: vdp only gathers from it (index_select copies); the deleter unmaps.
  return torch::from_blob(
      start, h.shape, [map, size](void*) { ::munmap(map, size); }, torch::TensorOptions().dtype(dtype_of(h.descr)));
}

}  // namespace vdp

namespace vdp {
namespace {

// The rows `ids` of a C-ordered array (each row contiguous), copied into a new tensor of the same
// dtype. Works for every dtype (also uint16/32/64, which few ATen kernels accept).
torch::Tensor gather_rows(const torch::Tensor& a, const std::vector<int64_t>& ids) {
  std::vector<int64_t> shape = a.sizes().vec();
  shape[0] = static_cast<int64_t>(ids.size());
  torch::Tensor out = torch::empty(shape, a.options());
  const size_t row = a.numel() == 0 ? 0 : a.nbytes() / static_cast<size_t>(a.size(0));
  const auto* src = static_cast<const char*>(a.data_ptr());
  auto* dst = static_cast<char*>(out.data_ptr());
  for (size_t k = 0; k < ids.size(); ++k) std::memcpy(dst + k * row, src + static_cast<size_t>(ids[k]) * row, row);
  return out;
}

// Floating-point and bool arrays in the model's dtype; integer arrays as int64 (class ids, tokens),
// except uint8 inputs, which are pixels: floats with their values 0..255 (inputs only).
torch::Tensor convert(const torch::Tensor& t, torch::ScalarType dtype, bool input) {
  if (t.is_floating_point() || t.scalar_type() == torch::kBool) return t.to(dtype);
  if (input && t.scalar_type() == torch::kUInt8) return t.to(dtype);
  return t.to(torch::kInt64);
}

std::shared_ptr<Dataset> npy_split(const std::string& dir, const std::string& prefix, torch::ScalarType dtype) {
  namespace fs = std::filesystem;
  const std::string xp = (fs::path(dir) / (prefix + "x.npy")).string();
  const std::string yp = (fs::path(dir) / (prefix + "y.npy")).string();
  const std::string mp = (fs::path(dir) / (prefix + "mask.npy")).string();
  torch::Tensor x = load_npy(xp), y = load_npy(yp), mask;
  VDP_CHECK(x.size(0) == y.size(0), "'", xp, "' holds ", x.size(0), " samples but '", yp, "' holds ", y.size(0),
            "; the files do not belong together");
  VDP_CHECK(x.size(0) > 0, "'", xp, "' holds no samples");
  if (fs::exists(mp)) {
    mask = load_npy(mp);
    VDP_CHECK(mask.sizes() == y.sizes(), "'", mp, "' has shape ", mask.sizes(), " but '", yp, "' has ", y.sizes(),
              "; the mask marks the real targets, one per target");
  }
  return std::make_shared<NpyDataset>(x, y, mask, dtype);
}

}  // namespace

NpyDataset::NpyDataset(torch::Tensor x, torch::Tensor y, torch::Tensor mask, torch::ScalarType dtype)
    : x_(std::move(x)), y_(std::move(y)), mask_(std::move(mask)), dtype_(dtype) {}

Batch NpyDataset::get(const std::vector<int64_t>& ids) const {
  for (int64_t i : ids) VDP_ASSERT(i >= 0 && i < size(), "sample index ", i, " out of range");
  Batch b;
  b.x = convert(gather_rows(x_, ids), dtype_, true);
  b.y = convert(gather_rows(y_, ids), dtype_, false);
  if (mask_.defined()) b.mask = gather_rows(mask_, ids).to(torch::kInt64);
  return b;
}

DatasetPair load_npy_dataset(const std::string& dir, torch::ScalarType dtype) {
  namespace fs = std::filesystem;
  DatasetPair p;
  p.train = npy_split(dir, "", dtype);
  if (fs::exists(fs::path(dir) / "test_x.npy")) p.test = npy_split(dir, "test_", dtype);
  return p;
}

}  // namespace vdp
