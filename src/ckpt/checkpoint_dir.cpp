#include "vdp/ckpt/checkpoint_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "vdp/ckpt/checkpoint.h"
#include "vdp/core/error.h"

namespace vdp {
namespace fs = std::filesystem;
namespace {

constexpr const char* kLockName = ".vdp-lock";

std::string read_small(const fs::path& p) {
  std::ifstream f(p);
  std::string line;
  std::getline(f, line);
  return line;
}

}  // namespace

CheckpointDirLock::CheckpointDirLock(const std::string& dir) : dir_(dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    created_dir_ = fs::create_directories(dir, ec);
    VDP_CHECK(fs::is_directory(dir, ec), "invalid value for --checkpoint-dir: cannot create '", dir, "': ",
              ec.message());
  }
  const fs::path lock = fs::path(dir) / kLockName;
  fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  created_lock_ = fd_ >= 0;
  if (fd_ < 0 && errno == EEXIST) fd_ = ::open(lock.c_str(), O_RDWR | O_CLOEXEC);
  VDP_CHECK(fd_ >= 0, "invalid value for --checkpoint-dir: cannot create the lock file '", lock.string(), "': ",
            std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK) {
      const std::string holder = read_small(lock);
      VDP_FAIL("invalid value for --checkpoint-dir: '", dir, "' is in use by another run (",
               holder.empty() ? std::string("holder unknown") : holder,
               "); wait for it to end, or give this run another --checkpoint-dir");
    }
    VDP_CHECK_IO(false, "cannot lock '", lock.string(), "': ", std::strerror(err));
  }
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  const std::string who = "pid " + std::to_string(::getpid()) + " on host " + host + "\n";
  // The holder's name is informative only; a failure to write it does not matter.
  if (::ftruncate(fd_, 0) == 0) (void)!::pwrite(fd_, who.data(), who.size(), 0);
}

CheckpointDirLock::~CheckpointDirLock() {
  if (fd_ >= 0) ::close(fd_);
}

void CheckpointDirLock::discard() {
  if (fd_ < 0) return;
  if (created_lock_) ::unlink((fs::path(dir_) / kLockName).c_str());
  if (created_dir_) ::rmdir(dir_.c_str());
  ::close(fd_);
  fd_ = -1;
}

int remove_stale_checkpoint_files(const std::string& dir) {
  std::error_code ec;
  std::vector<fs::path> stale;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory(ec)) continue;
    if (name.rfind(".tmp-", 0) == 0 || name.rfind(".old-", 0) == 0 ||
        (name.rfind("step-", 0) == 0 && !fs::exists(e.path() / "manifest.json", ec)))
      stale.push_back(e.path());
  }
  for (const auto& p : stale) remove_tree(p.string());
  return static_cast<int>(stale.size());
}

std::string newest_valid_checkpoint(const std::string& dir, const std::function<void(const std::string&)>& warn) {
  std::vector<std::string> all = list_checkpoints(dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      load_checkpoint(*it);
      return *it;
    } catch (const UserError& e) {
      warn(detail::format("skipping checkpoint '", *it, "': ", e.what()));
    }
  }
  return "";
}

}  // namespace vdp
