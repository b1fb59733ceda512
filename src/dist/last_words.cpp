#include "vdp/dist/last_words.h"

#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <thread>

namespace vdp {

void report_then_abort(const std::string& line, std::function<void()> abort, std::chrono::milliseconds deadline,
                       const std::function<void()>& end, const std::function<void(const std::string&)>& say) {
  if (say) {
    say(line);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
  }
  // Detached: if the abort never returns, the process ends without joining it.
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> returned = done->get_future();
  std::thread([abort = std::move(abort), done] {
    try {
      abort();
    } catch (...) {
    }
    done->set_value();
  }).detach();
  returned.wait_for(deadline);
  end();
  std::abort();
}

}  // namespace vdp
