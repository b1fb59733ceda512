// The plan (include/vdp/README.md, "The plan"): a pure function of (N, B, W, m, seed, epoch, drop_last) that says which
// samples every micro-step of every rank sees. No I/O, no MPI, no torch.
//
// - The epoch order is a permutation of [0, N) drawn from (seed, epoch) alone; it does not depend on
//   W or m, so every factorization of the same B consumes the same global sample stream.
// - Step s takes the next B_s samples of that order (B_s = B, except a short last step that holds
//   the remainder, unless drop_last).
// - The B_s samples are split over the W*K_s slots of the window, K_s = ceil(B_s / (W*m)), in virtual
//   rank order v = k*W + r, balanced: slot sizes differ by at most one and never exceed m. A slot may
//   be empty; its rank still runs the micro-step.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vdp {

struct PlanParams {
  int64_t num_samples = 0;   // N
  int64_t global_batch = 0;  // B
  int64_t world_size = 1;    // W
  int64_t micro_batch = 0;   // m
  uint64_t seed = 0;
  bool drop_last = false;
  bool shuffle = true;       // false: identity order (evaluation, debugging)
};

// One slot: a contiguous range [begin, end) of the step's samples in epoch order.
struct SlotRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};

class Plan {
 public:
  // Throws vdp::UserError for impossible parameters (N < 1, B < 1, W < 1, m < 1).
  explicit Plan(PlanParams p);

  const PlanParams& params() const { return p_; }
  int64_t steps_per_epoch() const;
  // Samples in step s (B_s).
  int64_t step_samples(int64_t step) const;
  // Micro-steps per window for step s (K_s); the same on every rank.
  int64_t micro_steps(int64_t step) const;
  // K of a full step: ceil(B / (W*m)) (or of the only step when N < B).
  int64_t full_micro_steps() const { return micro_steps(0); }
  // Range of slot (k, r) of step s, as offsets into the step's B_s samples.
  SlotRange slot_range(int64_t step, int64_t k, int64_t rank) const;
  // Sample indices of slot (k, r) of step s of `epoch`. Computes the permutation on first use of
  // an epoch and caches it (O(N) memory).
  std::vector<int64_t> slot(int64_t epoch, int64_t step, int64_t k, int64_t rank) const;
  // The epoch order: a permutation of [0, N) from (seed, epoch) alone.
  const std::vector<int64_t>& order(int64_t epoch) const;

  // Human-readable summary for --dry-run.
  std::string summary() const;

 private:
  PlanParams p_;
  mutable int64_t cached_epoch_ = -1;
  mutable std::vector<int64_t> cached_order_;
};

// Deterministic permutation of [0, n) from (seed, epoch): Fisher-Yates driven by SplitMix64 with
// unbiased bounded draws. Defined here, not via std:: distributions, so it is identical on every
// platform and standard library.
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace vdp
