// Two tiers of checks (as in PyTorch's c10d reducer):
//  - VDP_CHECK: something a user can cause (a bad option, a corrupt file). Throws vdp::UserError,
//    whose message names the problem and the fix; programs turn it into one line and exit code 2.
//  - VDP_ASSERT: our own invariants. Throws vdp::InternalError with file and line; exit code 1.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace vdp {

// Bad input: configuration, command line, data file, weights file. Exit code 2.
class UserError : public std::runtime_error {
 public:
  explicit UserError(const std::string& what) : std::runtime_error(what) {}
};

// A broken invariant inside vdp, or a failure of the system underneath (MPI, NCCL, CUDA).
class InternalError : public std::runtime_error {
 public:
  explicit InternalError(const std::string& what) : std::runtime_error(what) {}
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

// Training cannot go on (a non-finite gradient in fp32, ranks that diverged). Exit code 1.
class TrainingError : public std::runtime_error {
 public:
  explicit TrainingError(const std::string& what) : std::runtime_error(what) {}
};

// Exit codes shared by every vdp program.
constexpr int kExitBadInput = 2;
constexpr int kExitFailure = 1;

}  // namespace vdp

#define VDP_CHECK(cond, ...)                                         \
  do {                                                               \
    if (!(cond)) throw ::vdp::UserError(::vdp::detail::format(__VA_ARGS__)); \
  } while (0)

#define VDP_FAIL(...) throw ::vdp::UserError(::vdp::detail::format(__VA_ARGS__))

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
