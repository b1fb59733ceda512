#include "vdp/device/capture.h"

#include <exception>

#include "vdp/core/error.h"

namespace vdp {
namespace {

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// CUDA's words for an operation the capture cannot hold: cudaErrorStreamCaptureUnsupported ("operation
// not permitted when stream is capturing"), cudaErrorStreamCaptureImplicit (the legacy stream), and
// what the allocator or a synchronizing call says under capture.
bool refused_during_capture(const std::string& why) {
  for (const char* s : {"not permitted when stream is capturing", "StreamCaptureUnsupported", "StreamCaptureImplicit",
                        "implicit dependency", "capture_unsupported"})
    if (why.find(s) != std::string::npos) return true;
  return false;
}

}  // namespace

void capture_or_clean_up(CaptureSteps& steps, const std::function<void()>& work, const std::string& what,
                         const std::string& fix_sync, const std::string& fix_other) {
  steps.begin();
  std::string failure;
  try {
    work();
  } catch (const std::exception& e) {
    failure = e.what();
  }
  bool ended = false;
  try {
    steps.end();
    ended = true;
  } catch (const std::exception& e) {
    // The work's own error comes first; the end's when the work had none, or when only the end
    // says that CUDA refused an operation.
    if (failure.empty() || (!refused_during_capture(failure) && refused_during_capture(e.what()))) failure = e.what();
  }
  if (failure.empty()) return;
  // Each step alone: one that fails must not keep the others from running.
  auto quietly = [](const std::function<void()>& f) {
    try {
      f();
    } catch (...) {
    }
  };
  if (!ended) {
    quietly([&] {
      if (steps.capturing()) steps.abandon();
    });
    quietly([&] { steps.stop_routing(); });
    quietly([&] { steps.release_pool(); });
  }
  quietly([&] { steps.discard(); });
  const std::string why = first_line(failure);
  // vdp's own failure or the model's, not the user's input: exit 1 with CUDA's reason.
  throw InternalError(detail::format("--cuda-graphs: ", what, " could not be captured: ", why, "; ",
                                     refused_during_capture(failure) ? fix_sync : fix_other));
}

}  // namespace vdp
