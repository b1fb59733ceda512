#include "vdp/ckpt/checkpoint.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <ftw.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "vdp/core/error.h"

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)  // linux/fs.h
#endif

namespace vdp {
namespace fs = std::filesystem;
namespace {

constexpr const char* kFormat = "vdp-checkpoint-1";
const std::vector<std::string> kFiles = {"weights.safetensors", "optimizer.safetensors", "trainer.safetensors",
                                         "state.json"};


std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%010lld", static_cast<long long>(step));
  return buf;
}

void fsync_path(const fs::path& p, bool directory) {
  int fd = ::open(p.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  VDP_CHECK_IO(fd >= 0, "cannot open '", p.string(), "' to sync it: ", std::strerror(errno));
  const int rc = ::fsync(fd);
  ::close(fd);
  VDP_CHECK_IO(rc == 0, "fsync of '", p.string(), "' failed: ", std::strerror(errno));
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  VDP_CHECK_IO(f.good(), "cannot write '", p.string(), "' (check free space and permissions)");
  fsync_path(p, false);
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  VDP_CHECK(f.good(), "checkpoint file '", p.string(), "' is missing or unreadable");
  try {
    return nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    VDP_FAIL("checkpoint file '", p.string(), "' is not valid JSON (", e.what(), ")");
  }
}

// Complete checkpoints under `dir`, oldest first.
std::vector<std::pair<int64_t, fs::path>> complete_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("step-", 0) != 0 || !e.is_directory()) continue;
    if (!fs::exists(e.path() / "manifest.json")) continue;
    try {
      out.emplace_back(std::stoll(name.substr(5)), e.path());
    } catch (const std::exception&) {
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Moves the finished folder `tmp` to `final_path`. When a checkpoint of that step exists already
// (a resumed run reaching a step it saved before), the two are swapped atomically
// (renameat2 RENAME_EXCHANGE), so at every moment one complete checkpoint is there under the name;
// on file systems without the exchange the old one is first renamed aside.
void publish(const fs::path& tmp, const fs::path& final_path) {
  if (::rename(tmp.c_str(), final_path.c_str()) == 0) return;
  const int err = errno;
  VDP_CHECK_IO(err == EEXIST || err == ENOTEMPTY, "cannot rename '", tmp.string(), "' to '", final_path.string(),
               "': ", std::strerror(err));
  if (::syscall(SYS_renameat2, AT_FDCWD, tmp.c_str(), AT_FDCWD, final_path.c_str(), RENAME_EXCHANGE) == 0) {
    remove_tree(tmp);  // now holds the old checkpoint
    return;
  }
  const fs::path aside = tmp.parent_path() / (".old-" + final_path.filename().string() + "-" + std::to_string(::getpid()));
  VDP_CHECK_IO(::rename(final_path.c_str(), aside.c_str()) == 0, "cannot rename '", final_path.string(), "': ",
               std::strerror(errno));
  VDP_CHECK_IO(::rename(tmp.c_str(), final_path.c_str()) == 0, "cannot rename '", tmp.string(), "' to '",
               final_path.string(), "': ", std::strerror(errno));
  remove_tree(aside);
}

}  // namespace

// Note [std::filesystem::remove_all]: libtorch.so exports its own copy of parts of std::filesystem,
// and the dynamic linker binds our calls of remove_all to that copy, which crashes (seen with the
// torch 2.11.0 wheel). So vdp never calls remove_all.
void remove_tree(const std::string& path) {
  ::nftw(path.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
         FTW_DEPTH | FTW_PHYS);
}

std::vector<std::string> list_checkpoints(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& [step, path] : complete_checkpoints(dir)) out.push_back(path.string());
  return out;
}

uint32_t file_crc32(const std::string& path, uint64_t* size) {
  std::ifstream f(path, std::ios::binary);
  VDP_CHECK(f.good(), "checkpoint file '", path, "' is missing or unreadable");
  uLong crc = crc32(0L, Z_NULL, 0);
  uint64_t total = 0;
  std::vector<char> buf(1 << 20);
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = f.gcount();
    if (n <= 0) break;
    crc = crc32(crc, reinterpret_cast<const Bytef*>(buf.data()), static_cast<uInt>(n));
    total += static_cast<uint64_t>(n);
  }
  if (size) *size = total;
  return static_cast<uint32_t>(crc);
}

std::string save_checkpoint(const std::string& dir, int64_t step, const CheckpointData& data, int keep_last) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  VDP_CHECK_IO(fs::is_directory(dir), "cannot create the checkpoint folder '", dir, "': ", ec.message());
  const fs::path final_path = fs::path(dir) / step_name(step);
  const fs::path tmp = fs::path(dir) / (".tmp-" + step_name(step) + "-" + std::to_string(::getpid()));
  remove_tree(tmp);
  VDP_CHECK_IO(fs::create_directories(tmp, ec), "cannot create '", tmp.string(), "': ", ec.message());

  save_safetensors((tmp / "weights.safetensors").string(), data.weights, {{"format", "pt"}});
  save_safetensors((tmp / "optimizer.safetensors").string(), data.optimizer);
  save_safetensors((tmp / "trainer.safetensors").string(), data.trainer);
  nlohmann::json state = data.state;
  state["format"] = kFormat;
  state["step"] = step;
  write_text(tmp / "state.json", state.dump(2) + "\n");
  nlohmann::json manifest = {{"format", kFormat}, {"step", step}, {"files", nlohmann::json::object()}};
  for (const auto& f : kFiles) {
    uint64_t size = 0;
    const uint32_t crc = file_crc32((tmp / f).string(), &size);
    manifest["files"][f] = {{"bytes", size}, {"crc32", crc}};
  }
  // The manifest is what makes a folder a checkpoint: written last, after every file is synced.
  write_text(tmp / "manifest.json", manifest.dump(2) + "\n");
  fsync_path(tmp, true);
  publish(tmp, final_path);
  fsync_path(dir, true);

  if (keep_last > 0) {
    auto all = complete_checkpoints(dir);
    for (size_t i = 0; i + static_cast<size_t>(keep_last) < all.size(); ++i) remove_tree(all[i].second);
  }
  // Leftovers of writers that died mid-way (other pids) are garbage.
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().rfind(".tmp-", 0) == 0) remove_tree(e.path());
  return final_path.string();
}

std::string latest_checkpoint(const std::string& dir) {
  auto all = complete_checkpoints(dir);
  return all.empty() ? "" : all.back().second.string();
}

CheckpointData load_checkpoint(const std::string& path) {
  const fs::path root(path);
  VDP_CHECK(fs::is_directory(root), "invalid value for --resume: '", path,
            "' is not a checkpoint folder (give a step-N folder, or 'auto' with --checkpoint-dir)");
  const fs::path manifest_path = root / "manifest.json";
  VDP_CHECK(fs::exists(manifest_path), "'", path, "' has no manifest.json: not a checkpoint (give a step-N folder, "
            "or --resume auto with --checkpoint-dir) or an incomplete one (its writer was interrupted)");
  const nlohmann::json manifest = read_json(manifest_path);
  VDP_CHECK(manifest.is_object() && manifest.value("format", "") == kFormat && manifest.contains("files"), "'",
            manifest_path.string(), "' is not a ", kFormat, " manifest");
  for (const auto& f : kFiles) {
    VDP_CHECK(manifest["files"].contains(f), "'", manifest_path.string(), "' does not list ", f);
    const auto& entry = manifest["files"][f];
    uint64_t size = 0;
    const uint32_t crc = file_crc32((root / f).string(), &size);
    VDP_CHECK(size == entry.value("bytes", uint64_t{0}), "checkpoint file '", (root / f).string(), "' has ", size,
              " bytes, the manifest says ", entry.value("bytes", uint64_t{0}), " (truncated or replaced)");
    VDP_CHECK(crc == entry.value("crc32", uint32_t{0}), "checkpoint file '", (root / f).string(),
              "' fails its CRC-32 check (the file is corrupt)");
  }
  CheckpointData d;
  d.weights = load_safetensors((root / "weights.safetensors").string());
  d.optimizer = load_safetensors((root / "optimizer.safetensors").string());
  d.trainer = load_safetensors((root / "trainer.safetensors").string());
  d.state = read_json(root / "state.json");
  VDP_CHECK(d.state.is_object() && d.state.value("format", "") == kFormat, "'", (root / "state.json").string(),
            "' is not a ", kFormat, " state file");
  // The folder's name, the manifest and the state must name the same step: a folder copied or
  // renamed by hand would otherwise resume at the wrong position.
  const std::string name = root.filename().string();
  int64_t named = -1;
  if (name.rfind("step-", 0) == 0) {
    try {
      named = std::stoll(name.substr(5));
    } catch (const std::exception&) {
    }
  }
  const int64_t step = d.state.value("step", int64_t{-1});
  VDP_CHECK(step >= 0 && manifest.value("step", int64_t{-2}) == step && (named < 0 || named == step), "checkpoint '",
            path, "': state.json says step ", step, ", the manifest ", manifest.value("step", int64_t{-2}),
            " and the folder name ", named, " (a renamed or mixed-up checkpoint); resume from an intact step-N folder");
  return d;
}

}  // namespace vdp
