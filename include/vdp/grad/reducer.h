// The window reducer: one all-reduce of the flat gradient buffers per optimizer step, split into
// buckets that start as soon as backward has produced their gradients (include/vdp/README.md, "The
// window": buckets and overlap).
//
// Note [bucket order]: buckets are contiguous ranges of a flat buffer (no copies), about
// `bucket_bytes` each, cut at parameter boundaries. Parameters are laid out in reverse module
// order, so during backward the first bucket fills first. Buckets are launched strictly in index
// order: a bucket whose gradients are complete waits for its predecessors, so every rank issues
// the same collectives in the same order whatever the timing. The window's loss sum and item count
// sit at the end of the first buffer and travel in its last bucket; the trainer adds them before
// the last micro-step's backward so they are final when that bucket starts.
//
// Only the last micro-step of a window is armed: post-accumulation hooks on every parameter's
// gradient accumulator count down its bucket; hooks that fire in non-final micro-steps do nothing
// and nothing is communicated. finish() launches what has not started (unused parameters, a rank
// whose last slot was empty, the no-overlap mode) in order, then waits for every bucket.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "vdp/dist/communicator.h"
#include "vdp/grad/flat_grads.h"

namespace torch::autograd {
struct Node;
}

namespace vdp {

class WindowReducer {
 public:
  // `overlap` false: no hooks; finish() reduces every bucket after backward (for comparison, and
  // for models with collectives inside backward, such as SyncBatchNorm, whose order relative to
  // bucket launches must not depend on timing).
  WindowReducer(FlatGrads& flat, const std::vector<torch::Tensor>& params, std::shared_ptr<Communicator> comm,
                int64_t bucket_bytes, bool overlap);
  ~WindowReducer();
  WindowReducer(const WindowReducer&) = delete;
  WindowReducer& operator=(const WindowReducer&) = delete;

  // The next backward is the window's last: its hooks start bucket reductions.
  void arm();
  // Starts every bucket not started yet, in order, and waits for all of them.
  void finish();
  // Takes back arm() when no bucket has started yet (a backward that failed before its hooks
  // launched anything): returns whether the window can still run its last backward again.
  bool disarm();

  size_t num_buckets() const { return buckets_.size(); }
  // Bytes one window's reduction moves per rank (gradients plus the two scalars).
  int64_t bytes() const;

 private:
  struct Bucket {
    torch::Tensor view;     // contiguous range of a flat buffer
    size_t params = 0;      // parameters in it
    size_t pending = 0;     // parameters whose gradient is not final yet (armed window)
    std::unique_ptr<Work> work;
  };
  void mark_variable_ready(size_t param);
  void launch_in_order();

  std::shared_ptr<Communicator> comm_;
  bool overlap_;
  bool armed_ = false;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;  // [parameter]
  size_t next_ = 0;                // first bucket not launched
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // kept alive, as DDP does
  std::vector<uintptr_t> hook_keys_;
  // Hooks run on the autograd thread of their parameter's device: with parameters on several
  // devices they can run concurrently, so the counters and launches are guarded (as PyTorch's
  // reducer does).
  std::mutex mu_;
};

}  // namespace vdp
