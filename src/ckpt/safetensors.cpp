#include "vdp/ckpt/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "vdp/ckpt/safetensors_header.h"
#include "vdp/core/error.h"

namespace vdp {
namespace {

const std::vector<std::pair<std::string, torch::ScalarType>>& dtype_table() {
  static const std::vector<std::pair<std::string, torch::ScalarType>> t = {
      {"F64", torch::kFloat64}, {"F32", torch::kFloat32}, {"F16", torch::kFloat16}, {"BF16", torch::kBFloat16},
      {"I64", torch::kInt64},   {"I32", torch::kInt32},   {"I16", torch::kInt16},   {"I8", torch::kInt8},
      {"U8", torch::kUInt8},    {"BOOL", torch::kBool}};
  return t;
}

std::string dtype_name(torch::ScalarType t) {
  for (const auto& [n, s] : dtype_table())
    if (s == t) return n;
  VDP_FAIL("safetensors cannot store dtype ", t);
}

void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    VDP_CHECK_IO(w > 0, "cannot write '", path, "': ", std::strerror(errno), " (check free space and permissions)");
    p += w, n -= static_cast<size_t>(w);
  }
}

}  // namespace

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  namespace fs = std::filesystem;
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, t0] : tensors) {
    VDP_CHECK(name != "__metadata__" && !header.contains(name), "duplicate tensor name '", name, "'");
    torch::Tensor t = t0.detach().to(torch::kCPU).contiguous();
    const uint64_t n = static_cast<uint64_t>(t.numel()) * t.element_size();
    header[name] = {{"dtype", dtype_name(t.scalar_type())}, {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + n}}};
    offset += n;
    data.push_back(t);
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // align the data to 8 bytes, as the reference writer does
  const uint64_t hlen = h.size();

  fs::path target(path);
  fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  // The output policy (config/validate.cpp) checked at start that the folder exists or can be made
  // in a writable one; make it now (it may also have been removed during the run).
  std::error_code made;
  fs::create_directories(dir, made);
  VDP_CHECK_IO(fs::is_directory(dir), "cannot write '", path, "': cannot create folder '", dir.string(), "'",
               made ? ": " + made.message() : std::string());
  std::string tmp = (dir / ("." + target.filename().string() + ".tmp." + std::to_string(::getpid()))).string();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  VDP_CHECK_IO(fd >= 0, "cannot create '", tmp, "': ", std::strerror(errno));
  try {
    unsigned char len_le[8];
    for (int i = 0; i < 8; ++i) len_le[i] = static_cast<unsigned char>(hlen >> (8 * i));
    write_all(fd, len_le, 8, tmp);
    write_all(fd, h.data(), h.size(), tmp);
    for (const auto& t : data) write_all(fd, t.data_ptr(), t.numel() * t.element_size(), tmp);
    VDP_CHECK_IO(::fsync(fd) == 0, "fsync of '", tmp, "' failed: ", std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  VDP_CHECK_IO(::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename '", tmp, "' to '", path, "': ",
            std::strerror(errno));
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

NamedTensors parse_safetensors(const uint8_t* data, size_t size, const std::string& name,
                               std::map<std::string, std::string>* metadata) {
  const SafetensorsHeader h = parse_safetensors_header(data, size, name);
  if (metadata) *metadata = h.metadata;
  NamedTensors out;
  const uint8_t* base = data + h.data_offset;
  for (const auto& e : h.tensors) {
    const auto d = std::find_if(dtype_table().begin(), dtype_table().end(), [&](const auto& p) { return p.first == e.dtype; });
    VDP_ASSERT(d != dtype_table().end(), e.dtype);
    torch::Tensor t = torch::empty(e.shape, torch::TensorOptions().dtype(d->second));
    if (e.end > e.begin) std::memcpy(t.data_ptr(), base + e.begin, e.end - e.begin);
    out.emplace_back(e.name, t);
  }
  return out;
}

NamedTensors load_safetensors(const std::string& path, std::map<std::string, std::string>* metadata) {
  std::ifstream f(path, std::ios::binary);
  VDP_CHECK(f.good(), "cannot read '", path, "' (check the path and permissions)");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return parse_safetensors(bytes.data(), bytes.size(), path, metadata);
}

NamedTensors module_state(const torch::nn::Module& module) {
  NamedTensors out;
  for (const auto& p : module.named_parameters(true)) out.emplace_back(p.key(), p.value().detach().cpu());
  for (const auto& b : module.named_buffers(true)) out.emplace_back(b.key(), b.value().detach().cpu());
  return out;
}

void load_module_state(torch::nn::Module& module, const std::string& path) {
  load_module_state(module, load_safetensors(path), path);
}

void load_module_state(torch::nn::Module& module, const NamedTensors& file, const std::string& path) {
  std::map<std::string, torch::Tensor> by_name(file.begin(), file.end());
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;  // (destination, source)
  auto match = [&](const std::string& key, const torch::Tensor& dst) {
    auto it = by_name.find(key);
    VDP_CHECK(it != by_name.end(), "'", path, "' has no tensor '", key,
              "' that the model needs (weights of another model or configuration?)");
    VDP_CHECK(it->second.sizes() == dst.sizes(), "'", path, "': tensor '", key, "' has shape ", it->second.sizes(),
              " but the model's is ", dst.sizes(), " (weights of another model or configuration?)");
    VDP_CHECK(it->second.scalar_type() == dst.scalar_type(), "'", path, "': tensor '", key, "' is ",
              it->second.scalar_type(), " but the model's is ", dst.scalar_type(), " (set --dtype to match)");
    // NaN or Inf in a weights file would surface only as a non-finite loss steps later.
    VDP_CHECK(!it->second.is_floating_point() || at::isfinite(it->second).all().item<bool>(), "'", path,
              "': tensor '", key, "' holds NaN or Inf (a diverged run's weights?); use weights with finite values");
    copies.emplace_back(dst, it->second);
    by_name.erase(it);
  };
  for (const auto& p : module.named_parameters(true)) match(p.key(), p.value());
  for (const auto& b : module.named_buffers(true)) match(b.key(), b.value());
  VDP_CHECK(by_name.empty(), "'", path, "' holds tensor '", by_name.begin()->first,
            "' that the model does not have (weights of another model or configuration?)");
  torch::NoGradGuard no_grad;
  for (auto& [dst, src] : copies) dst.copy_(src);
}

}  // namespace vdp
