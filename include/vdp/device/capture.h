// One CUDA graph capture, and what a failed one must leave behind: nothing.
//
// Note [a failed capture]: PyTorch's CUDAGraph::capture_end() throws when CUDA invalidated the
// capture, before it tells the caching allocators that the capture is over and before it releases
// the capture's memory pool; its reset() then skips the pool too (the capture never "ended"). The
// allocators would keep the capture registered for the rest of the process: blocks used on other
// streams are then never freed (their events wait for "no capture underway"), and the pool leaks.
// So the capture runs through CaptureSteps, and on any failure (of the work or of the end) the
// stream leaves capture mode, the allocators stop routing to the pool, the pool is released and
// the graph object is reset, each exactly once, before one line names the CUDA error.
//
// CaptureSteps is the seam: the CUDA build implements it over at::cuda::CUDAGraph with a pool of
// its own (device/cuda_graph.cpp); the CPU tests implement it with a fake that fails where told
// (tests/device/capture_test.cpp).
#pragma once

#include <functional>
#include <string>

namespace vdp {

class CaptureSteps {
 public:
  virtual ~CaptureSteps() = default;
  // Starts capturing the current stream into the graph, allocating from the capture's own pool.
  virtual void begin() = 0;
  // Ends the capture; throws if CUDA invalidated it. Once it returned, the graph owns the pool and
  // discard() releases it.
  virtual void end() = 0;
  // Whether the stream is still capturing (end() threw before CUDA ended the capture).
  virtual bool capturing() = 0;
  // Ends the stream's capture and destroys whatever graph it made.
  virtual void abandon() = 0;
  // The allocators stop routing allocations to the capture's pool (a no-op where end() did it).
  virtual void stop_routing() = 0;
  // The capture's pool is released: freed once its blocks are.
  virtual void release_pool() = 0;
  // The graph object forgets the capture (PyTorch's reset(): the generators' capture state, and the
  // pool when end() had returned).
  virtual void discard() = 0;
};

// Runs `work` inside a capture. On failure cleans up (Note [a failed capture]) and throws
// InternalError: "--cuda-graphs: <what> could not be captured: <first line of the first error>;
// <fix>", with `fix_sync` when CUDA refused an operation during the capture (the work synchronized
// with the host or used the legacy default stream) and `fix_other` otherwise.
void capture_or_clean_up(CaptureSteps& steps, const std::function<void()>& work, const std::string& what,
                         const std::string& fix_sync, const std::string& fix_other);

}  // namespace vdp
