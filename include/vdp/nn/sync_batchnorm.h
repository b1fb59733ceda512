// SyncBatchNorm (include/vdp/README.md, "BatchNorm"): batch statistics over the W slots of the same micro-step, one per
// rank, weighted by their real sample counts, so uneven and empty micro-batches are exact.
//
// Forward (training): each rank computes its per-channel mean and sum of squared deviations over
// its n_r values; one all-reduce of a [W, 2C+1] table (each rank fills its own row) gives every
// rank every (mean_r, M2_r, n_r); the global statistics are merged from the table in rank order,
// as deviations from the global mean (numerically stable, identical on every rank).
// Backward: one all-reduce of the two per-channel sums Σdy and Σdy·(x−mean); the weight and bias
// gradients stay local contributions, which the window's gradient reduction sums.
//
// Every rank must call forward and backward the same number of times in the same order; a rank
// whose slot is empty calls them on a batch of 0 rows (the trainer does this). Eval mode with
// running statistics communicates nothing; eval mode without running statistics uses each rank's
// own batch statistics (no communication, so evaluation shards may differ in size).
#pragma once

#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/options/batchnorm.h>
#include <torch/nn/pimpl.h>

#include <memory>

#include "vdp/dist/communicator.h"

namespace vdp {

class SyncBatchNormImpl : public torch::nn::Cloneable<SyncBatchNormImpl> {
 public:
  // `dims`: 1, 2 or 3, for inputs [N, C] / [N, C, L], [N, C, H, W], [N, C, D, H, W].
  SyncBatchNormImpl(const torch::nn::BatchNormOptions& options, int dims);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& input);

  // The communicator of the ranks whose micro-batches are synchronized. Without one (or with a
  // world of 1), statistics are those of the local batch: plain BatchNorm.
  void set_communicator(std::shared_ptr<Communicator> comm) { comm_ = std::move(comm); }
  torch::nn::BatchNormOptions options;
  int dims;
  torch::Tensor weight, bias;                                   // [C], if affine
  torch::Tensor running_mean, running_var, num_batches_tracked;  // if track_running_stats

 private:
  std::shared_ptr<Communicator> comm_;
};

TORCH_MODULE(SyncBatchNorm);

// Replaces every torch::nn::BatchNorm{1,2,3}d reachable from `module` through named children and
// Sequential containers by a SyncBatchNorm with the same options, parameters and buffers (same
// names, so weights files stay compatible). Returns the module to use: `module` itself, or the
// replacement when `module` is a BatchNorm. A BatchNorm that a user's module keeps in a member
// holder is replaced in the module tree, but that member still points to the old layer: build
// such models with vdp::SyncBatchNorm directly.
std::shared_ptr<torch::nn::Module> convert_sync_batchnorm(std::shared_ptr<torch::nn::Module> module);

// Gives every SyncBatchNorm in `module` the communicator; returns how many there are.
int attach_communicator(torch::nn::Module& module, const std::shared_ptr<Communicator>& comm);

// The per-window momentum unit for every BatchNorm and SyncBatchNorm of a model: with K forwards
// per optimizer step, momentum m becomes m' = 1 − (1 − m)^(1/K), so the running statistics' time
// constant is in optimizer steps whatever K is. Captures each layer's configured momentum once.
class WindowMomentum {
 public:
  explicit WindowMomentum(torch::nn::Module& module);
  void set_micro_steps(int64_t micro_steps);
  bool empty() const { return layers_.empty(); }

 private:
  struct Layer {
    torch::nn::BatchNormOptions* options;  // the layer's own options, momentum rewritten in place
    double base;
  };
  std::vector<Layer> layers_;
  int64_t current_ = 1;
};

// m' = 1 − (1 − m)^(1/K)
double window_momentum(double momentum, int64_t micro_steps);

}  // namespace vdp
