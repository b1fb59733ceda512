#include "vdp/report/metrics.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "vdp/core/error.h"

namespace vdp {

bool keep_on_resume(const nlohmann::json& r, int64_t resume_step) {
  if (!r.is_object() || !r.contains("event") || !r.contains("step") || !r["step"].is_number_integer()) return false;
  const std::string event = r["event"].get<std::string>();
  const int64_t step = r["step"].get<int64_t>();
  if (event == "step") return step < resume_step;  // step s's record is written after window s ran
  if (event == "start" || event == "eval") return step <= resume_step;
  return false;  // final and stopped records of an earlier attempt: superseded
}

MetricsWriter::MetricsWriter(const std::string& path, int64_t resume_step) : path_(path) {
  if (path.empty()) return;
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto parent = fs::path(path).parent_path();
  if (!parent.empty()) fs::create_directories(parent, ec);
  std::string kept;
  if (resume_step >= 0) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      // A line cut by a crash mid-write, or anything else that is not a record, is dropped.
      const nlohmann::json r = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (keep_on_resume(r, resume_step)) kept += line + "\n";
    }
  }
  // A character device or a FIFO (the output-path policy lets only those through besides regular
  // files) is written in place, never replaced. A FIFO is opened without blocking: with no reader
  // the open fails at once (ENXIO) instead of waiting forever.
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NONBLOCK);
    VDP_CHECK(fd_ >= 0 || errno != ENXIO, "invalid value for --metrics: '", path, "' is a FIFO that no process "
              "reads (start its reader first, or give a file path)");
    VDP_CHECK_IO(fd_ >= 0, "cannot open the metrics file '", path, "': ", std::strerror(errno));
    const int flags = ::fcntl(fd_, F_GETFL);
    if (flags >= 0) ::fcntl(fd_, F_SETFL, flags & ~O_NONBLOCK);
    return;  // nothing to keep: a stream has no earlier records to rewrite
  }
  // Rewritten through a temporary file and a rename, so a crash here leaves the old file whole.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  fd_ = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  VDP_CHECK(fd_ >= 0, "invalid value for --metrics: cannot create '", tmp, "': ", std::strerror(errno));
  if (!kept.empty()) {
    const ssize_t w = ::write(fd_, kept.data(), kept.size());
    if (w != static_cast<ssize_t>(kept.size())) {
      const int err = errno;
      ::close(fd_);
      fd_ = -1;
      ::unlink(tmp.c_str());
      VDP_CHECK_IO(false, "cannot write the metrics file '", path, "': ", w < 0 ? std::strerror(err) : "short write (disk full?)");
    }
    size_ = w;
  }
  regular_ = true;
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    ::unlink(tmp.c_str());
    VDP_CHECK_IO(false, "cannot create the metrics file '", path, "': ", std::strerror(err));
  }
}

MetricsWriter::~MetricsWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void MetricsWriter::write(const nlohmann::json& record) {
  if (fd_ < 0) return;
  const std::string line = record.dump() + "\n";
  const ssize_t w = ::write(fd_, line.data(), line.size());
  if (w != static_cast<ssize_t>(line.size())) {
    const int err = errno;
    if (w > 0) (void)!::ftruncate(fd_, size_);  // never leave half a record
    VDP_CHECK_IO(false, "cannot write the metrics file '", path_, "': ",
                 w < 0 ? std::strerror(err) : "short write (disk full?)");
  }
  size_ += w;
  // A file unlinked under the run (its folder removed, say) takes every record from now on with it:
  // end the run with a true line now rather than after the whole run (one fstat per record).
  struct stat st {};
  if (regular_ && ::fstat(fd_, &st) == 0 && st.st_nlink == 0)
    VDP_CHECK_IO(false, "the metrics file '", path_, "' was removed during the run (with its folder?), so its records "
                 "are lost; keep the output folders until the run ends, then resume from the last checkpoint");
}

// On a terminal; or where the launcher says a person watches a pipe to one (VDP_PROGRESS=1: launch/train.sh
// sets it when its own stderr is a terminal, as mpirun hands the ranks' stderr over a pipe); never with
// VDP_PROGRESS=0.
ProgressLine::ProgressLine(bool enabled) {
  const char* env = std::getenv("VDP_PROGRESS");
  const std::string want = env ? env : "";
  enabled_ = enabled && want != "0" && (want == "1" || ::isatty(STDERR_FILENO));
}

void ProgressLine::update(int64_t epoch, int64_t epochs, int64_t step, int64_t steps, double loss,
                          double samples_per_s, double eta_s) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_ < std::chrono::milliseconds(250) && step != steps) return;
  last_ = now;
  std::fprintf(stderr, "\r\033[Kepoch %lld/%lld  step %lld/%lld  loss %.4f  %.0f samples/s  ETA %s",
               static_cast<long long>(epoch), static_cast<long long>(epochs), static_cast<long long>(step),
               static_cast<long long>(steps), loss, samples_per_s, format_duration(eta_s).c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressLine::clear() {
  if (enabled_ && drawn_) std::fprintf(stderr, "\r\033[K");
  drawn_ = false;
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  char buf[32];
  const long long t = static_cast<long long>(s + 0.5);
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%lldh%02lldm", t / 3600, (t / 60) % 60);
  else if (t >= 60) std::snprintf(buf, sizeof buf, "%lldm%02llds", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%llds", t);
  return buf;
}

}  // namespace vdp
