// The trainer's data producer: this rank's micro-batches, in the order the trainer consumes them,
// gathered ahead of it by a background thread (include/vdp/README.md, "The GPU path").
//
//   for each global step g in [first, end): for k in 0..K_s-1: slot (epoch, step, k) of this rank
//
// The producer gathers each slot's samples (Dataset::get), and on a GPU pins them and copies them
// on its own copy stream, recording an event; next() makes the caller's current stream wait for
// that event (no host synchronization) and marks the tensors as used on it, so the compute stream
// never waits for the host and the caching allocator never reuses a batch's memory early. At most
// `depth` slots are ahead (double buffering at depth 2). Batches and their order are exactly the
// ones gathering in the loop would give: results do not depend on the depth.
//
// A dataset error in the producer is rethrown by next() at the slot it belongs to (same exception
// type), so a bad data file still ends the run with its own message. The destructor stops and joins
// the producer, so a run that ends early (a stop signal, an error) never hangs.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "vdp/data/dataset.h"
#include "vdp/plan/plan.h"

namespace vdp {

// One micro-step's slot of this rank.
struct LoadedSlot {
  int64_t epoch = 0;
  int64_t epoch_step = 0;
  int64_t k = 0;
  std::vector<int64_t> ids;  // sample ids (empty: an empty slot)
  Batch batch;               // on the device; no tensors for an empty slot when empty slots are skipped
};

struct LoaderOptions {
  int64_t depth = 2;        // slots gathered ahead of the trainer; 0: each gathered inside next()
  bool skip_empty = true;   // an empty slot carries no batch (else a batch of 0 rows)
};

class BatchLoader {
 public:
  // Slots of `rank` for global steps [first_step, end_step) of `plan` (steps run on across epochs).
  BatchLoader(std::shared_ptr<const Dataset> data, const Plan& plan, int rank, int64_t first_step, int64_t end_step,
              torch::Device device, LoaderOptions opts = {});
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // The next slot, in order. Throws what gathering it threw; past the end, an internal error.
  LoadedSlot next();
  int64_t depth() const { return opts_.depth; }

 private:
  struct Item {
    LoadedSlot slot;
    std::function<void()> ready;   // GPU: waits for the copy on the caller's stream
    std::exception_ptr error;
  };
  Item produce();  // the next slot of the sequence
  void run();      // the producer thread

  std::shared_ptr<const Dataset> data_;
  Plan plan_;      // the loader's own copy: Plan caches an epoch's order and is not thread-safe
  int rank_;
  torch::Device device_;
  LoaderOptions opts_;
  // The position of the next slot to produce.
  int64_t step_, end_step_, k_ = 0;
  int64_t per_epoch_;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stop_ = false;
  bool done_ = false;  // the producer has produced everything (or failed)
  std::thread thread_;
  std::shared_ptr<void> copy_stream_;  // GPU: the copy stream (c10::cuda::CUDAStream)
};

}  // namespace vdp
