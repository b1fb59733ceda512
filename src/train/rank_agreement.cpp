#include "vdp/train/rank_agreement.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <cstring>
#include <sstream>

#include "vdp/core/error.h"

namespace vdp {
namespace {

// FNV-1a, 64 bits: a digest, not a defence against forgery.
uint64_t fnv1a(const void* data, size_t n, uint64_t h = 1469598103934665603ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

uint64_t digest(const torch::Tensor& t, uint64_t h) {
  if (!t.defined()) return fnv1a("undef", 5, h);
  const torch::Tensor c = t.detach().cpu().contiguous();
  const std::string meta = detail::format(c.scalar_type(), c.sizes());
  h = fnv1a(meta.data(), meta.size(), h);
  return fnv1a(c.data_ptr(), static_cast<size_t>(c.numel()) * c.element_size(), h);
}

std::string hex(uint64_t h) {
  std::ostringstream os;
  os << std::hex << h;
  return os.str();
}

}  // namespace

// The first, middle and last samples, with the split's size: a rank reading other data (another
// file, another seed, a truncated copy) differs here in all but contrived cases.
std::string data_digest(const Dataset& d) {
  const int64_t n = d.size();
  std::vector<int64_t> ids{0, n / 2, n - 1};
  if (n == 0) ids.clear();
  const Batch b = d.get(ids);
  uint64_t h = digest(b.x, 0);
  h = digest(b.y, h);
  h = digest(b.mask, h);
  return hex(h);
}

// A whole file's bytes, streamed in blocks of 1 MiB: 8-byte words through a multiply-xorshift mix
// (at memory speed, unlike a byte-wise hash), then the tail and the length. "" if it cannot be read.
std::string file_digest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::vector<char> block(1 << 20);
  uint64_t h = 0x243F6A8885A308D3ull, total = 0;
  while (in) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    const size_t n = static_cast<size_t>(in.gcount());
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, block.data() + i, 8);
      h = (h ^ w) * 0x9E3779B97F4A7C15ull;
      h ^= h >> 29;
    }
    for (; i < n; ++i) h = (h ^ static_cast<unsigned char>(block[i])) * 1099511628211ull;
    total += n;
  }
  h = (h ^ total) * 0x9E3779B97F4A7C15ull;
  return hex(h ^ (h >> 31));
}

// The files the configured dataset and model are read from, sorted (none for synthetic data).
std::vector<std::string> input_files(const Config& cfg) {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  std::error_code ec;
  auto add = [&](const fs::path& p) {
    if (fs::is_regular_file(p, ec)) out.push_back(p.string());
  };
  switch (cfg.dataset) {
    case DatasetKind::Npy:
      for (const char* f : {"x.npy", "y.npy", "mask.npy", "test_x.npy", "test_y.npy", "test_mask.npy"})
        add(fs::path(cfg.data_dir) / f);
      break;
    case DatasetKind::Tokens:
      for (const auto& e : fs::directory_iterator(cfg.data_dir, ec))
        if (e.path().extension() == ".bin") add(e.path());
      break;
    case DatasetKind::FashionMnist:
      for (const char* f : kFashionMnistFiles) add(fs::path(cfg.data_dir) / f);
      break;
    default: break;
  }
  std::sort(out.begin(), out.end());
  if (!cfg.model_file.empty()) add(cfg.model_file);
  return out;
}

std::vector<std::pair<std::string, std::string>> agreement_items(const Config& cfg, const Task& task) {
  // Every option whose row says ranks must agree (config/config.h, kAgree).
  std::vector<std::pair<std::string, std::string>> items;
  for (const auto& [name, value] : options_with(cfg, kAgree)) items.emplace_back("--" + name, value);
  items.emplace_back("training samples", std::to_string(task.train->size()));
  items.emplace_back("training data", data_digest(*task.train));
  items.emplace_back("test samples", task.test ? std::to_string(task.test->size()) : "none");
  if (task.test) items.emplace_back("test data", data_digest(*task.test));
  // Every byte of the files read (data and a TorchScript module): other data of the same shapes,
  // or a module with the same parameters and other code, differs here.
  for (const std::string& f : input_files(cfg))
    items.emplace_back("the checksum of " + std::filesystem::path(f).filename().string(), file_digest(f));
  std::string shapes;
  for (const auto& p : task.model->named_parameters(true))
    shapes += detail::format(p.key(), p.value().scalar_type(), p.value().sizes(), ";");
  for (const auto& b : task.model->named_buffers(true))
    shapes += detail::format(b.key(), b.value().scalar_type(), b.value().sizes(), ";");
  items.emplace_back("model (parameter and buffer names, shapes, dtypes)", hex(fnv1a(shapes.data(), shapes.size())));
  return items;
}

void check_ranks_agree(const Config& cfg, const Task& task, Communicator& comm) {
  const int w = comm.size(), me = comm.rank();
  if (w == 1) return;
  const auto items = agreement_items(cfg, task);
  // Digests as int64, sent as float64 pairs of 32-bit halves (exact in a double).
  std::vector<double> mine;
  for (const auto& [name, value] : items) {
    const uint64_t h = fnv1a(value.data(), value.size(), fnv1a(name.data(), name.size()));
    mine.push_back(static_cast<double>(h >> 32));
    mine.push_back(static_cast<double>(h & 0xffffffffu));
  }
  const auto n0 = static_cast<size_t>(comm.broadcast_host({static_cast<double>(mine.size())}, 0)[0]);
  std::vector<double> ref(n0, 0);
  if (me == 0) ref = mine;
  ref = comm.broadcast_host(ref, 0);
  // first_bad[r] = 1 + index of rank r's first differing item (0: agrees).
  std::vector<double> first_bad(w, 0);
  const size_t n = std::min(n0, mine.size());
  for (size_t i = 0; i < n; i += 2)
    if (ref[i] != mine[i] || ref[i + 1] != mine[i + 1]) {
      first_bad[me] = static_cast<double>(i / 2 + 1);
      break;
    }
  if (first_bad[me] == 0 && n0 != mine.size()) first_bad[me] = static_cast<double>(n / 2 + 1);
  first_bad = comm.all_reduce_host(first_bad);
  size_t item = SIZE_MAX;
  int culprit = -1;
  std::string ranks;
  for (int r = 0; r < w; ++r) {
    if (first_bad[r] == 0) continue;
    ranks += (ranks.empty() ? "" : ",") + std::to_string(r);
    if (static_cast<size_t>(first_bad[r]) - 1 < item) item = static_cast<size_t>(first_bad[r]) - 1, culprit = r;
  }
  if (culprit < 0) return;
  // Both values travel so that the one line names them.
  const std::string name = item < items.size() ? items[item].first : "the item list (different vdp builds?)";
  const std::string value = item < items.size() ? items[item].second : "?";
  const std::string ref_value = comm.broadcast_string(value, 0);
  const std::string bad_value = comm.broadcast_string(value, culprit);
  throw AgreedError(detail::format("ranks disagree: ", name, " is '", ref_value, "' on rank 0 but '", bad_value,
                                   "' on rank ", culprit, " (ranks that differ: ", ranks,
                                   "); start every rank with the same options and data"));
}

}  // namespace vdp
