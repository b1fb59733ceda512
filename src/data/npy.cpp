#include "vdp/data/npy.h"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>

#include "vdp/core/error.h"
#include "vdp/data/datasets.h"
#include "vdp/data/mapped_file.h"

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

NpyArray map_npy(const std::string& path) {
  std::shared_ptr<MappedFile> file = MappedFile::open(path);
  VDP_CHECK(file->size() >= 10, "'", path, "' is not a .npy file (", file->size(), " bytes)");
  const NpyHeader h = parse_npy_header(file->data(), file->size(), path);
  void* start = const_cast<unsigned char*>(file->data()) + h.data_offset;
  // Read-only pages: vdp only gathers from it (copy_rows copies); the deleter keeps the map alive.
  NpyArray a;
  a.data = torch::from_blob(
      start, h.shape, [file](void*) {}, torch::TensorOptions().dtype(dtype_of(h.descr)));
  a.file = std::move(file);
  a.offset = h.data_offset;
  return a;
}

torch::Tensor load_npy(const std::string& path) { return map_npy(path).data; }

}  // namespace vdp

namespace vdp {
namespace {

// The rows `ids` of a C-ordered array (each row contiguous), copied into a new tensor of the same
// dtype. Works for every dtype (also uint16/32/64, which few ATen kernels accept).
// Read through the file's guard: a file truncated or rewritten under the job is an IoError naming it.
torch::Tensor gather_rows(const NpyArray& a, const std::vector<int64_t>& ids) {
  std::vector<int64_t> shape = a.data.sizes().vec();
  shape[0] = static_cast<int64_t>(ids.size());
  torch::Tensor out = torch::empty(shape, a.data.options());
  const size_t row = a.data.numel() == 0 ? 0 : a.data.nbytes() / static_cast<size_t>(a.data.size(0));
  a.file->copy_rows(out.data_ptr(), a.offset, ids.data(), ids.size(), row);
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
  NpyArray x = map_npy(xp), y = map_npy(yp), mask;
  VDP_CHECK(x.data.size(0) == y.data.size(0), "'", xp, "' holds ", x.data.size(0), " samples but '", yp, "' holds ",
            y.data.size(0), "; the files do not belong together");
  VDP_CHECK(x.data.size(0) > 0, "'", xp, "' holds no samples");
  if (fs::exists(mp)) {
    mask = map_npy(mp);
    VDP_CHECK(mask.data.sizes() == y.data.sizes(), "'", mp, "' has shape ", mask.data.sizes(), " but '", yp, "' has ",
              y.data.sizes(), "; the mask marks the real targets, one per target");
  }
  return std::make_shared<NpyDataset>(x, y, mask, dtype);
}

}  // namespace

NpyDataset::NpyDataset(NpyArray x, NpyArray y, NpyArray mask, torch::ScalarType dtype)
    : x_(std::move(x)), y_(std::move(y)), mask_(std::move(mask)), dtype_(dtype) {}

Batch NpyDataset::get(const std::vector<int64_t>& ids) const {
  for (int64_t i : ids) VDP_ASSERT(i >= 0 && i < size(), "sample index ", i, " out of range");
  Batch b;
  b.x = convert(gather_rows(x_, ids), dtype_, true);
  b.y = convert(gather_rows(y_, ids), dtype_, false);
  if (mask_.file) b.mask = gather_rows(mask_, ids).to(torch::kInt64);
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
