// Note [last words]: a rank that must end the whole job (the NCCL watchdog: a peer that never
// arrived, a failed network) says why first, then aborts its communicator, then ends the job. The
// abort (ncclCommAbort) can itself block on a wedged device or a dead peer's connection, so it runs
// on a thread of its own and is given `deadline`; the job ends after it returned or after the
// deadline, whichever comes first. So the line is never lost to a hang, and --timeout still bounds
// the job (by --timeout plus the deadline).
#pragma once

#include <chrono>
#include <functional>
#include <string>

namespace vdp {

// How long a communicator's abort may take before the job ends without it.
constexpr std::chrono::milliseconds kAbortDeadline{5000};

// Prints `line` (one line on stderr, or through `say` when given), runs `abort` for at most
// `deadline`, then calls `end`, which must not return (MPI_Abort); if it does, std::abort().
[[noreturn]] void report_then_abort(const std::string& line, std::function<void()> abort,
                                    std::chrono::milliseconds deadline, const std::function<void()>& end,
                                    const std::function<void(const std::string&)>& say = nullptr);

}  // namespace vdp
