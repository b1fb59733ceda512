// --micro-batch auto (launch/README.md, "Fitting the memory"): with the global batch
// fixed, each rank measures the largest chunk whose micro-step fits its --memory-budget, and the
// ranks agree on the plan's m (the largest of those; the smallest with BatchNorm, whose statistics
// must see whole micro-batches). A rank that fits less keeps its own smaller chunk size, so the
// result is the one the plan defines whatever each rank's memory (slots run in chunks, train/window.h).
//
// What is measured, per trial size c: the bytes a micro-step of c samples allocates above what was
// live before it (forward, loss, backward into gradients that already exist), plus the batches the
// producer holds ahead on the CPU, plus the static part: parameters and buffers, their gradients and
// the optimizer's state (computed from their sizes). On the CPU the allocations are counted by a
// counting allocator; on CUDA by the caching allocator's peak statistics, with a real out-of-memory
// error taken as "does not fit" (the cache is emptied after it). Trials double c from 1 until one
// does not fit or c reaches ceil(B / W), then bisect to within an eighth: every sample has the same
// shape in vdp's datasets, so the first samples are as large as any. The trials leave no trace:
// gradients, running statistics and the random generators are put back.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vdp/config/config.h"
#include "vdp/dist/communicator.h"
#include "vdp/task/task.h"

namespace vdp {

struct MicroBatchChoice {
  int64_t micro_batch = 0;    // the plan's m, the same on every rank
  int64_t chunk = 0;          // this rank's chunk size (0: m)
  std::vector<int64_t> fits;  // per rank: the largest chunk that fit
  int64_t peak_bytes = 0;     // this rank: static bytes + the micro-step's peak at its chunk
  int64_t static_bytes = 0;   // this rank: parameters, buffers, gradients, optimizer state
  int64_t budget_bytes = 0;   // this rank's budget
  int trials = 0;             // micro-steps this rank ran
  double seconds = 0;         // the search's wall time on this rank
  std::string from_checkpoint;  // the checkpoint the choice was taken from ("": measured)
};

// What a micro-step of c samples needs on `device`: the search's trials (vdp-bench scans with it
// too). While it lives the model's gradients exist (zeros, as in training); when it goes, the
// gradients, the running statistics and the random generators are as they were before it.
class MicroStepMeter {
 public:
  // `world`: ranks that share a sharded optimizer's state (--shard-optimizer).
  MicroStepMeter(const Config& cfg, Task& task, const torch::Device& device, int world = 1);
  ~MicroStepMeter();
  MicroStepMeter(const MicroStepMeter&) = delete;
  MicroStepMeter& operator=(const MicroStepMeter&) = delete;

  // Static bytes + the producer's batches ahead (CPU) + the micro-step's peak above what was live;
  // nullopt when the device ran out of memory (reason() says what the allocator said).
  std::optional<int64_t> total(int64_t c);
  int64_t static_bytes() const { return static_bytes_; }  // parameters, buffers, gradients, optimizer state
  int64_t model_bytes() const { return model_bytes_; }    // parameters and buffers
  int trials() const { return trials_; }
  const std::string& reason() const { return reason_; }

 private:
  const Config& cfg_;
  Task& task_;
  torch::Device device_;
  int64_t static_bytes_ = 0, model_bytes_ = 0;
  int trials_ = 0;
  std::string reason_;
  std::vector<torch::Tensor> buffers_, saved_buffers_, params_;
  torch::Tensor rng_cpu_, rng_cuda_;
};

// Measures and agrees (collectives on `comm`); the model must be on its device, in train mode. A
// rank where one sample does not fit throws IoError (exit 3) naming what it measured.
MicroBatchChoice search_micro_batch(const Config& cfg, Task& task, Communicator& comm);

// The bytes --memory-budget allows this rank: a fraction of the device's memory (including what the
// model already holds there; the CPU's shared by `local_ranks`), or the bytes written.
int64_t memory_budget_bytes(const Config& cfg, const torch::Device& device, int64_t model_bytes, int local_ranks);

}  // namespace vdp
