// Graceful stop (include/vdp/README.md, "Failures and stops"). SIGTERM, SIGINT and SIGUSR1 (Slurm's --signal) only set a flag;
// the trainer acts on it at the next window boundary. The flag travels in the window's own
// reduction (a scalar at the tail of the flat buffer, beside the loss sum and count), so every
// rank learns that some rank was signalled from the same collective and all stop after the same
// step with no extra communication. Then a checkpoint is written (with --checkpoint-dir) and
// vdp-train exits with kExitStopped (5). A second signal of the same kind ends the process at once.
#pragma once

#include "vdp/core/signal_name.h"

namespace vdp {

// Installs the handlers (idempotent). vdp-train calls it at start; a library user may too.
void install_stop_handlers();
// The signal that asked for a stop since start (or since clear_stop_request()), 0 if none: the
// trainer's stop source in vdp-train (Trainer::stop_on).
int stop_signal();
// Tests and tools: forget a request / ask for a stop as if `signal` had arrived.
void clear_stop_request();
void request_stop(int signal);

}  // namespace vdp
