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

constexpr size_t kMaxHeader = 1 << 20;  // numpy writes a few hundred bytes

struct Cursor {
  const std::string& s;
  size_t i = 0;
  const std::string& name;
  void skip_space() {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  }
  bool eat(char c) {
    skip_space();
    if (i < s.size() && s[i] == c) {
      ++i;
      return true;
    }
    return false;
  }
  void expect(char c, const char* what) {
    VDP_CHECK(eat(c), "'", name, "' is not a valid .npy file: expected '", std::string(1, c), "' ", what,
              " in its header");
  }
  std::string quoted() {
    skip_space();
    VDP_CHECK(i < s.size() && (s[i] == '\'' || s[i] == '"'), "'", name,
              "' is not a valid .npy file: expected a quoted string in its header");
    const char q = s[i++];
    const size_t end = s.find(q, i);
    VDP_CHECK(end != std::string::npos, "'", name, "' is not a valid .npy file: unterminated string in its header");
    std::string out = s.substr(i, end - i);
    i = end + 1;
    return out;
  }
  int64_t integer() {
    skip_space();
    size_t start = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (i < s.size() && (s[i] == 'L')) ++i;  // Python 2 longs
    VDP_CHECK(i > start && i - start <= 18, "'", name, "' is not a valid .npy file: bad shape entry in its header");
    return std::stoll(s.substr(start, i - start));
  }
};

torch::ScalarType dtype_of(const std::string& descr, const std::string& name) {
  VDP_CHECK(descr.size() >= 3, "'", name, "': unsupported dtype '", descr, "'");
  const char order = descr[0];
  const std::string kind = descr.substr(1);
  VDP_CHECK(order != '>', "'", name, "': big-endian data ('", descr,
            "') is not supported; save it little-endian (arr.astype(arr.dtype.newbyteorder('<')))");
  VDP_CHECK(order == '<' || order == '|' || order == '=', "'", name, "': unsupported dtype '", descr, "'");
  static const std::pair<const char*, torch::ScalarType> kinds[] = {
      {"b1", torch::kBool},     {"i1", torch::kInt8},     {"u1", torch::kUInt8},   {"i2", torch::kInt16},
      {"u2", torch::kUInt16},   {"i4", torch::kInt32},    {"u4", torch::kUInt32},  {"i8", torch::kInt64},
      {"u8", torch::kUInt64},   {"f2", torch::kFloat16},  {"f4", torch::kFloat32}, {"f8", torch::kFloat64}};
  for (const auto& [k, t] : kinds)
    if (kind == k) return t;
  VDP_FAIL("'", name, "': unsupported dtype '", descr, "' (use bool, int8-64, uint8-64 or float16/32/64)");
}

}  // namespace

NpyHeader parse_npy_header(const unsigned char* data, size_t size, const std::string& name) {
  static const unsigned char magic[] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  VDP_CHECK(size >= 10 && std::memcmp(data, magic, 6) == 0, "'", name,
            "' is not a .npy file (no \\x93NUMPY magic; write it with numpy.save)");
  const int major = data[6];
  VDP_CHECK(major >= 1 && major <= 3, "'", name, "': .npy format version ", major, " is not supported (1 to 3)");
  size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = data[8] | (size_t{data[9]} << 8);
    offset = 10;
  } else {
    VDP_CHECK(size >= 12, "'", name, "' is truncated (its header is cut short)");
    header_len = data[8] | (size_t{data[9]} << 8) | (size_t{data[10]} << 16) | (size_t{data[11]} << 24);
    offset = 12;
  }
  VDP_CHECK(header_len <= kMaxHeader && offset + header_len <= size, "'", name,
            "' is truncated or not a .npy file (header of ", header_len, " bytes in a file of ", size, ")");
  const std::string text(reinterpret_cast<const char*>(data + offset), header_len);
  NpyHeader h;
  h.data_offset = offset + header_len;

  Cursor c{text, 0, name};
  c.expect('{', "at the start of the dictionary");
  bool have_descr = false, have_order = false, have_shape = false, fortran = false;
  while (!c.eat('}')) {
    const std::string key = c.quoted();
    c.expect(':', "after a key");
    if (key == "descr") {
      h.descr = c.quoted();
      h.dtype = dtype_of(h.descr, name);
      have_descr = true;
    } else if (key == "fortran_order") {
      c.skip_space();
      if (text.compare(c.i, 4, "True") == 0) fortran = true, c.i += 4;
      else if (text.compare(c.i, 5, "False") == 0) c.i += 5;
      else VDP_FAIL("'", name, "' is not a valid .npy file: fortran_order is neither True nor False");
      have_order = true;
    } else if (key == "shape") {
      c.expect('(', "to open the shape");
      while (!c.eat(')')) {
        h.shape.push_back(c.integer());
        VDP_CHECK(h.shape.size() <= 16, "'", name, "': more than 16 dimensions");
        if (!c.eat(',')) {
          c.expect(')', "to close the shape");
          break;
        }
      }
      have_shape = true;
    } else {
      VDP_FAIL("'", name, "' is not a valid .npy file: unknown header key '", key, "'");
    }
    if (!c.eat(',')) {
      c.expect('}', "to close the dictionary");
      break;
    }
  }
  VDP_CHECK(have_descr && have_order && have_shape, "'", name,
            "' is not a valid .npy file: its header lacks descr, fortran_order or shape");
  VDP_CHECK(!fortran, "'", name, "' is in Fortran order; save a C-ordered array (numpy.ascontiguousarray)");
  VDP_CHECK(!h.shape.empty(), "'", name, "' holds a scalar; a dataset needs an array whose first dimension is the samples");
  uint64_t elements = 1;
  for (int64_t d : h.shape) {
    VDP_CHECK(d >= 0 && (d == 0 || elements <= (uint64_t{1} << 50) / static_cast<uint64_t>(d)), "'", name,
              "': absurd shape in its header");
    elements *= static_cast<uint64_t>(d);
  }
  const uint64_t bytes = elements * c10::elementSize(h.dtype);
  VDP_CHECK(h.data_offset + bytes == size, "'", name, "' holds ", size - h.data_offset, " bytes of data but its header (",
            h.descr, ", shape of ", elements, " elements) says ", bytes, ": the file is truncated or damaged");
  return h;
}

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
      start, h.shape, [map, size](void*) { ::munmap(map, size); }, torch::TensorOptions().dtype(h.dtype));
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

class NpyDataset : public Dataset {
 public:
  NpyDataset(torch::Tensor x, torch::Tensor y, torch::Tensor mask, torch::ScalarType dtype)
      : x_(std::move(x)), y_(std::move(y)), mask_(std::move(mask)), dtype_(dtype) {}
  int64_t size() const override { return x_.size(0); }
  Batch get(const std::vector<int64_t>& ids) const override {
    for (int64_t i : ids) VDP_ASSERT(i >= 0 && i < size(), "sample index ", i, " out of range");
    Batch b;
    b.x = convert(gather_rows(x_, ids), dtype_, true);
    b.y = convert(gather_rows(y_, ids), dtype_, false);
    if (mask_.defined()) b.mask = gather_rows(mask_, ids).to(torch::kInt64);
    return b;
  }

 private:
  torch::Tensor x_, y_, mask_;
  torch::ScalarType dtype_;
};

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

DatasetPair load_npy_dataset(const std::string& dir, torch::ScalarType dtype) {
  namespace fs = std::filesystem;
  DatasetPair p;
  p.train = npy_split(dir, "", dtype);
  if (fs::exists(fs::path(dir) / "test_x.npy")) p.test = npy_split(dir, "test_", dtype);
  return p;
}

}  // namespace vdp
