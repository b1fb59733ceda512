#include "vdp/ckpt/safetensors_header.h"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "vdp/core/error.h"

namespace vdp {
namespace {

// Headers above this size are refused before any allocation (the reference implementation's
// limit is 100 MB).
constexpr uint64_t kMaxHeader = 100ull << 20;

}  // namespace

size_t safetensors_element_size(const std::string& dtype) {
  static const std::vector<std::pair<std::string, size_t>> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4},
      {"I16", 2}, {"I8", 1},  {"U8", 1},  {"BOOL", 1}};
  for (const auto& [n, s] : sizes)
    if (n == dtype) return s;
  return 0;
}

SafetensorsHeader parse_safetensors_header(const uint8_t* data, size_t size, const std::string& name) {
  VDP_CHECK(size >= 8, "'", name, "' is not a safetensors file (", size, " bytes, shorter than its header length)");
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= uint64_t{data[i]} << (8 * i);
  VDP_CHECK(hlen <= kMaxHeader, "'", name, "' declares a header of ", hlen, " bytes (corrupt or not safetensors)");
  VDP_CHECK(hlen <= size - 8, "'", name, "' is truncated: its header needs ", hlen, " bytes, the file has ", size - 8);
  nlohmann::json header;
  try {
    // The header is a flat object of small objects: refuse deep nesting before it is built.
    header = nlohmann::json::parse(data + 8, data + 8 + hlen, [&](int depth, nlohmann::json::parse_event_t,
                                                                 nlohmann::json&) {
      VDP_CHECK(depth <= 8, "'", name, "' has a safetensors header nested ", depth, " levels deep (corrupt file)");
      return true;
    });
  } catch (const nlohmann::json::exception& e) {
    VDP_FAIL("'", name, "' has a malformed safetensors header (", e.what(), ")");
  }
  VDP_CHECK(header.is_object(), "'", name, "' has a safetensors header that is not a JSON object");
  const uint64_t body = size - 8 - hlen;

  SafetensorsHeader h;
  std::vector<SafetensorsEntry>& entries = h.tensors;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    if (key == "__metadata__") {
      VDP_CHECK(it->is_object(), "'", name, "': __metadata__ must be an object of strings");
      for (auto m = it->begin(); m != it->end(); ++m) {
        VDP_CHECK(m->is_string(), "'", name, "': __metadata__ value of '", m.key(), "' is not a string");
        h.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const auto& v = *it;
    VDP_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"), "'", name,
              "': tensor '", key, "' lacks dtype, shape or data_offsets");
    SafetensorsEntry e;
    e.name = key;
    VDP_CHECK(v["dtype"].is_string(), "'", name, "': tensor '", key, "' has a non-string dtype");
    const std::string dt = v["dtype"].get<std::string>();
    e.element_size = safetensors_element_size(dt);
    VDP_CHECK(e.element_size > 0, "'", name, "': tensor '", key, "' has unsupported dtype '", dt, "'");
    e.dtype = dt;
    VDP_CHECK(v["shape"].is_array(), "'", name, "': tensor '", key, "' has a shape that is not an array");
    uint64_t numel = 1;
    for (const auto& s : v["shape"]) {
      VDP_CHECK(s.is_number_unsigned() || (s.is_number_integer() && s.get<int64_t>() >= 0), "'", name, "': tensor '",
                key, "' has a negative or non-integer dimension");
      const uint64_t dim = s.get<uint64_t>();
      VDP_CHECK(dim == 0 || numel <= body / dim, "'", name, "': tensor '", key,
                "' declares more elements than the file holds (absurd shape)");
      numel *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = v["data_offsets"];
    VDP_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(), "'",
              name, "': tensor '", key, "' has malformed data_offsets");
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    VDP_CHECK(e.begin <= e.end && e.end <= body, "'", name, "': tensor '", key, "' has data_offsets [", e.begin, ", ",
              e.end, "] outside the ", body, " data bytes (truncated or corrupt file)");
    const uint64_t need = numel * e.element_size;
    VDP_CHECK(e.end - e.begin == need, "'", name, "': tensor '", key, "' has ", e.end - e.begin,
              " bytes but its dtype and shape need ", need);
    entries.push_back(std::move(e));
  }
  // Tensors must tile the data area exactly: no overlaps and no gaps.
  std::vector<const SafetensorsEntry*> sorted;
  for (const auto& e : entries) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](const SafetensorsEntry* a, const SafetensorsEntry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t cursor = 0;
  for (const SafetensorsEntry* e : sorted) {
    VDP_CHECK(e->begin == cursor, "'", name, "': tensor '", e->name, "' starts at byte ", e->begin, " where ",
              (e->begin < cursor ? "the previous tensor still runs (overlap)" : "a gap begins"), " (corrupt file)");
    cursor = e->end;
  }
  VDP_CHECK(cursor == body, "'", name, "' has ", body - cursor, " bytes after its last tensor (corrupt file)");

  h.data_offset = 8 + hlen;
  return h;
}

}  // namespace vdp
