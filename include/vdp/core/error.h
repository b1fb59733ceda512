// Two tiers of checks (as in PyTorch's c10d reducer):
//  - VDP_CHECK: something a user can cause (a bad option, a corrupt file). Throws vdp::UserError,
//    whose message names the problem and the fix; programs turn it into one line and exit code 2.
//  - VDP_ASSERT: our own invariants. Throws vdp::InternalError with file and line; exit code 1.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace vdp {

// Every error vdp throws carries its exit code and the word the one-line report starts with, so the
// program's main reports any of them without knowing the kind (run/run.h).
class Error : public std::runtime_error {
 public:
  Error(const std::string& what, int exit_code, const char* kind)
      : std::runtime_error(what), exit_code_(exit_code), kind_(kind) {}
  int exit_code() const { return exit_code_; }
  const char* kind() const { return kind_; }

 private:
  int exit_code_;
  const char* kind_;
};

// Exit codes shared by every vdp program (launch/README.md, "Exit codes and failures").
constexpr int kExitFailure = 1;   // internal error, or training cannot go on (non-finite fp32 gradients)
constexpr int kExitBadInput = 2;  // bad input: options, files, ranks that disagree; nothing was written
constexpr int kExitIo = 3;        // environment or I/O failure: disk full, out of memory
constexpr int kExitTimeout = 4;   // a rank did not arrive at a collective within --timeout
constexpr int kExitStopped = 5;   // stopped by SIGTERM/SIGINT/SIGUSR1 at a window boundary (checkpoint written)

// Bad input: configuration, command line, data file, weights file. Exit code 2.
class UserError : public Error {
 public:
  explicit UserError(const std::string& what) : Error(what, kExitBadInput, "error") {}
};

// Bad input that every rank found together through a collective (ranks that disagree, a locked
// checkpoint folder): rank 0 reports it and every rank exits 2 without aborting the job.
class AgreedError : public UserError {
 public:
  explicit AgreedError(const std::string& what) : UserError(what) {}
};

// A broken invariant inside vdp, or a failure of the system underneath (MPI, NCCL, CUDA). Exit code 1.
class InternalError : public Error {
 public:
  explicit InternalError(const std::string& what) : Error(what, kExitFailure, "failed") {}
};

// Training cannot go on (a non-finite gradient in fp32, ranks that diverged). Exit code 1.
class TrainingError : public Error {
 public:
  explicit TrainingError(const std::string& what) : Error(what, kExitFailure, "failed") {}
};

// The environment failed under a correct run: a disk full or unwritable, memory exhausted. Exit code 3.
class IoError : public Error {
 public:
  explicit IoError(const std::string& what) : Error(what, kExitIo, "I/O error") {}
};

// A collective did not complete within --timeout: a rank stalled, died or never arrived. Exit code 4.
class TimeoutError : public Error {
 public:
  explicit TimeoutError(const std::string& what) : Error(what, kExitTimeout, "timeout") {}
};

namespace detail {
inline void format_into(std::ostringstream&) {}
template <typename T, typename... Rest>
void format_into(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  format_into(os, rest...);
}
template <typename... Args>
std::string format(const Args&... args) {
  std::ostringstream os;
  format_into(os, args...);
  return os.str();
}
}  // namespace detail

}  // namespace vdp

#define VDP_CHECK(cond, ...)                                         \
  do {                                                               \
    if (!(cond)) throw ::vdp::UserError(::vdp::detail::format(__VA_ARGS__)); \
  } while (0)

#define VDP_FAIL(...) throw ::vdp::UserError(::vdp::detail::format(__VA_ARGS__))

#define VDP_CHECK_IO(cond, ...)                                               \
  do {                                                                        \
    if (!(cond)) throw ::vdp::IoError(::vdp::detail::format(__VA_ARGS__));    \
  } while (0)

#define VDP_CHECK_TRAINING(cond, ...)                                          \
  do {                                                                         \
    if (!(cond)) throw ::vdp::TrainingError(::vdp::detail::format(__VA_ARGS__)); \
  } while (0)

#define VDP_ASSERT(cond, ...)                                                           \
  do {                                                                                  \
    if (!(cond))                                                                        \
      throw ::vdp::InternalError(::vdp::detail::format("internal error at ", __FILE__, \
                                                       ":", __LINE__, ": ", #cond, " ", \
                                                       ##__VA_ARGS__));                 \
  } while (0)
