#include "vdp/data/mapped_file.h"

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "vdp/core/error.h"

namespace vdp {
namespace {

// The SIGBUS handler's table: each live map's address range and the line it prints. Entries are
// claimed and released with atomics only, so the handler (any thread, any time) reads them safely.
constexpr int kSlots = 64;
constexpr size_t kLine = 1024;
struct Slot {
  std::atomic<uintptr_t> begin{0}, end{0};
  char line[kLine] = {};
};
Slot g_slots[kSlots];
std::atomic<bool> g_slot_taken[kSlots];

// Where a SIGBUS in copy_rows() on this thread jumps back to (nullptr outside copy_rows). Volatile,
// with signal fences around the copy: the compiler knows memcpy reads no globals and would otherwise
// drop the store before the copy as dead (the one after it overwrites it).
thread_local sigjmp_buf* volatile t_guard = nullptr;

void on_sigbus(int, siginfo_t* info, void*) {
  if (t_guard != nullptr) siglongjmp(*t_guard, 1);
  const auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  for (Slot& s : g_slots) {
    const uintptr_t b = s.begin.load(std::memory_order_acquire), e = s.end.load(std::memory_order_acquire);
    if (b != 0 && addr >= b && addr < e) {
      const ssize_t ignored = ::write(STDERR_FILENO, s.line, std::strlen(s.line));
      (void)ignored;
      _exit(kExitIo);
    }
  }
  // Not a mapped data file: the default action (the fault repeats when the handler returns).
  ::signal(SIGBUS, SIG_DFL);
}

void install_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, nullptr);
  });
}

int64_t mtime_ns(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  VDP_CHECK(fd >= 0, "cannot open '", path, "': ", std::strerror(errno));
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->fd_ = fd;
  struct stat st {};
  VDP_CHECK(::fstat(fd, &st) == 0 && S_ISREG(st.st_mode), "'", path, "' is not a regular file");
  f->size_ = static_cast<size_t>(st.st_size);
  f->mtime_ns_ = mtime_ns(st);
  if (f->size_ == 0) return f;
  void* map = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
  VDP_CHECK_IO(map != MAP_FAILED, "cannot map '", path, "': ", std::strerror(errno));
  f->map_ = map;
  install_handler();
  for (int i = 0; i < kSlots; ++i) {
    bool expected = false;
    if (!g_slot_taken[i].compare_exchange_strong(expected, true)) continue;
    Slot& s = g_slots[i];
    const std::string line = "vdp-train: I/O error: " + f->changed_message("truncated") + "\n";
    std::strncpy(s.line, line.c_str(), kLine - 2);
    s.line[kLine - 2] = '\n';
    s.line[kLine - 1] = '\0';
    s.end.store(reinterpret_cast<uintptr_t>(map) + f->size_, std::memory_order_release);
    s.begin.store(reinterpret_cast<uintptr_t>(map), std::memory_order_release);
    f->slot_ = i;
    break;
  }
  return f;
}

MappedFile::~MappedFile() {
  if (slot_ >= 0) {
    g_slots[slot_].begin.store(0, std::memory_order_release);
    g_slots[slot_].end.store(0, std::memory_order_release);
    g_slot_taken[slot_].store(false, std::memory_order_release);
  }
  if (map_ != nullptr) ::munmap(map_, size_);
  if (fd_ >= 0) ::close(fd_);
}

std::string MappedFile::changed_message(const char* how) const {
  return detail::format("'", path_, "' changed while the job was reading it (", how, "); training data must not change under a running job: write "
                        "new data to another file (and rename it into place) or stop the job first");
}

void MappedFile::copy_rows(void* dst, size_t offset, const int64_t* ids, size_t n, size_t row_bytes) const {
  sigjmp_buf guard;
  if (sigsetjmp(guard, 1) != 0) {
    t_guard = nullptr;
    throw IoError(changed_message("truncated"));
  }
  t_guard = &guard;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  auto* out = static_cast<char*>(dst);
  const char* src = static_cast<const char*>(map_) + offset;
  for (size_t k = 0; k < n; ++k)
    std::memcpy(out + k * row_bytes, src + static_cast<size_t>(ids[k]) * row_bytes, row_bytes);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  t_guard = nullptr;
  check_unchanged();
}

void MappedFile::check_unchanged() const {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) throw IoError(detail::format("cannot stat '", path_, "': ", std::strerror(errno)));
  if (static_cast<size_t>(st.st_size) != size_ || mtime_ns(st) != mtime_ns_)
    throw IoError(changed_message(static_cast<size_t>(st.st_size) < size_ ? "truncated" : "rewritten"));
}

}  // namespace vdp
