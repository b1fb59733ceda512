// The name of a stop signal in messages and metrics: "SIGTERM", "SIGINT", "SIGUSR1", "signal N",
// and for 0 (this rank was stopped by another rank's vote) "a signal to another rank".
#pragma once

#include <csignal>
#include <string>

namespace vdp {

inline std::string signal_name(int signal) {
  switch (signal) {
    case 0: return "a signal to another rank";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGUSR1: return "SIGUSR1";
    default: return "signal " + std::to_string(signal);
  }
}

}  // namespace vdp
