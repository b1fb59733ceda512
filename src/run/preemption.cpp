#include "vdp/run/preemption.h"

#include <csignal>

namespace vdp {
namespace {

volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_stop_signal(int sig) {
  if (g_signal == sig) {
    // The second signal of a kind: the user means it. Default action (async-signal-safe).
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_signal = sig;
}

}  // namespace

void install_stop_handlers() {
  for (int sig : {SIGTERM, SIGINT, SIGUSR1}) {
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(sig, &sa, nullptr);
  }
}

int stop_signal() { return g_signal; }
void clear_stop_request() { g_signal = 0; }
void request_stop(int signal) { g_signal = signal; }

}  // namespace vdp
