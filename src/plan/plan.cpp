#include "vdp/plan/plan.h"

#include <algorithm>
#include <numeric>
#include <sstream>

#include "vdp/core/error.h"

namespace vdp {
namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform integer in [0, bound) without modulo bias (Lemire's method with rejection).
uint64_t bounded(uint64_t& state, uint64_t bound) {
  unsigned __int128 m = static_cast<unsigned __int128>(splitmix64(state)) * bound;
  uint64_t low = static_cast<uint64_t>(m);
  if (low < bound) {
    uint64_t threshold = -bound % bound;
    while (low < threshold) {
      m = static_cast<unsigned __int128>(splitmix64(state)) * bound;
      low = static_cast<uint64_t>(m);
    }
  }
  return static_cast<uint64_t>(m >> 64);
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  uint64_t state = seed ^ (0xD1B54A32D192ED03ull * static_cast<uint64_t>(epoch + 1));
  splitmix64(state);
  for (int64_t i = n - 1; i > 0; --i) {
    int64_t j = static_cast<int64_t>(bounded(state, static_cast<uint64_t>(i + 1)));
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

Plan::Plan(PlanParams p) : p_(p) {
  VDP_CHECK(p_.num_samples >= 1, "the dataset is empty (N = ", p_.num_samples, "); give a dataset with samples");
  VDP_CHECK(p_.global_batch >= 1, "invalid value for --global-batch: ", p_.global_batch, " (must be >= 1)");
  VDP_CHECK(p_.world_size >= 1, "invalid world size ", p_.world_size);
  VDP_CHECK(p_.micro_batch >= 1, "invalid value for --micro-batch: ", p_.micro_batch, " (must be >= 1)");
  VDP_CHECK(!p_.drop_last || p_.num_samples >= p_.global_batch, "--drop-last with N = ", p_.num_samples,
            " samples < global batch ", p_.global_batch, " leaves no step at all (lower --global-batch or drop --drop-last)");
}

int64_t Plan::steps_per_epoch() const {
  return p_.drop_last ? p_.num_samples / p_.global_batch : ceil_div(p_.num_samples, p_.global_batch);
}

int64_t Plan::step_samples(int64_t step) const {
  VDP_ASSERT(step >= 0 && step < steps_per_epoch(), "step ", step);
  return std::min(p_.global_batch, p_.num_samples - step * p_.global_batch);
}

int64_t Plan::micro_steps(int64_t step) const {
  return ceil_div(step_samples(step), p_.world_size * p_.micro_batch);
}

SlotRange Plan::slot_range(int64_t step, int64_t k, int64_t rank) const {
  const int64_t bs = step_samples(step);
  const int64_t slots = micro_steps(step) * p_.world_size;
  VDP_ASSERT(k >= 0 && k < micro_steps(step) && rank >= 0 && rank < p_.world_size, "slot (", k, ", ", rank, ")");
  const int64_t v = k * p_.world_size + rank;  // virtual rank
  const int64_t base = bs / slots, extra = bs % slots;
  // The first `extra` slots hold base+1 samples; since bs <= slots*m, base+1 <= m whenever extra > 0.
  SlotRange r;
  r.begin = v * base + std::min(v, extra);
  r.end = r.begin + base + (v < extra ? 1 : 0);
  return r;
}

const std::vector<int64_t>& Plan::order(int64_t epoch) const {
  if (cached_epoch_ != epoch) {
    if (p_.shuffle) {
      cached_order_ = epoch_permutation(p_.num_samples, p_.seed, epoch);
    } else {
      cached_order_.resize(static_cast<size_t>(p_.num_samples));
      std::iota(cached_order_.begin(), cached_order_.end(), 0);
    }
    cached_epoch_ = epoch;
  }
  return cached_order_;
}

std::vector<int64_t> Plan::slot(int64_t epoch, int64_t step, int64_t k, int64_t rank) const {
  const SlotRange r = slot_range(step, k, rank);
  const std::vector<int64_t>& ord = order(epoch);
  const int64_t first = step * p_.global_batch;
  return std::vector<int64_t>(ord.begin() + first + r.begin, ord.begin() + first + r.end);
}

std::string Plan::summary() const {
  std::ostringstream os;
  const int64_t steps = steps_per_epoch();
  os << "plan: N=" << p_.num_samples << " B=" << p_.global_batch << " W=" << p_.world_size
     << " m=" << p_.micro_batch << " K=" << full_micro_steps() << " steps/epoch=" << steps
     << " drop_last=" << (p_.drop_last ? "true" : "false") << "\n";
  os << "  virtual data-parallel width W*K = " << p_.world_size * full_micro_steps()
     << " slots per full step; full step slot sizes: ";
  auto describe = [&](int64_t s) {
    std::ostringstream d;
    int64_t lo = INT64_MAX, hi = 0, empty = 0;
    for (int64_t k = 0; k < micro_steps(s); ++k)
      for (int64_t r = 0; r < p_.world_size; ++r) {
        int64_t n = slot_range(s, k, r).size();
        lo = std::min(lo, n), hi = std::max(hi, n), empty += n == 0;
      }
    d << (lo == hi ? std::to_string(lo) : std::to_string(lo) + ".." + std::to_string(hi));
    if (empty) d << " (" << empty << " empty)";
    return d.str();
  };
  os << describe(0) << "\n";
  const int64_t last = steps - 1;
  if (step_samples(last) != p_.global_batch) {
    os << "  last step " << last << ": B_s=" << step_samples(last) << " K_s=" << micro_steps(last)
       << " slot sizes [k][r]:";
    for (int64_t k = 0; k < micro_steps(last); ++k) {
      os << " [";
      for (int64_t r = 0; r < p_.world_size; ++r) os << (r ? " " : "") << slot_range(last, k, r).size();
      os << "]";
    }
    os << "\n";
  } else {
    os << "  every step is full (N divisible by B" << (p_.drop_last ? ", or the remainder dropped" : "") << ")\n";
  }
  if (p_.drop_last && p_.num_samples % p_.global_batch)
    os << "  drop_last: " << p_.num_samples % p_.global_batch << " samples per epoch are not trained on\n";
  return os.str();
}

}  // namespace vdp
