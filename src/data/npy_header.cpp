#include "vdp/data/npy_header.h"

#include <cctype>
#include <cstring>

#include "vdp/core/error.h"

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
    const size_t digits = i - start;
    VDP_CHECK(digits > 0 && digits <= 18, "'", name, "' is not a valid .npy file: bad shape entry in its header");
    const int64_t value = std::stoll(s.substr(start, digits));
    if (i < s.size() && s[i] == 'L') ++i;  // Python 2 longs
    return value;
  }
};

// The item size of a supported dtype ("<f4" → 4), or a UserError.
int item_size(const std::string& descr, const std::string& name) {
  VDP_CHECK(descr.size() >= 3, "'", name, "': unsupported dtype '", descr, "'");
  const char order = descr[0];
  const std::string kind = descr.substr(1);
  VDP_CHECK(order != '>', "'", name, "': big-endian data ('", descr,
            "') is not supported; save it little-endian (arr.astype(arr.dtype.newbyteorder('<')))");
  VDP_CHECK(order == '<' || order == '|' || order == '=', "'", name, "': unsupported dtype '", descr, "'");
  static const char* const kinds[] = {"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"};
  for (const char* k : kinds)
    if (kind == k) return kind[1] - '0';
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
      h.item_size = item_size(h.descr, name);
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
  const uint64_t bytes = elements * static_cast<uint64_t>(h.item_size);
  VDP_CHECK(h.data_offset + bytes == size, "'", name, "' holds ", size - h.data_offset, " bytes of data but its header (",
            h.descr, ", shape of ", elements, " elements) says ", bytes, ": the file is truncated or damaged");
  return h;
}

}  // namespace vdp
