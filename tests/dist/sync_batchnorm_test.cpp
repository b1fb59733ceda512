// SyncBatchNorm at W ranks with uneven micro-batches and an empty one equals BatchNorm on the
// concatenated batch in one process: output, input gradient, weight and bias gradients (summed
// over ranks, as the window reduction does) and running statistics.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/nn/modules/batchnorm.h>

#include "../train/train_test_util.h"
#include "vdp/dist/factory.h"
#include "vdp/dist/mpi_env.h"
#include "vdp/nn/sync_batchnorm.h"

namespace vdp {
namespace {

using testing::with;
using testing::world;

// Rank r's share of the concatenated batch: uneven sizes, rank 1 empty (when W > 1).
std::vector<int64_t> rank_sizes(int w) {
  std::vector<int64_t> s;
  for (int r = 0; r < w; ++r) s.push_back(r == 1 ? 0 : 3 + 2 * r);
  return s;
}

double rel(const torch::Tensor& a, const torch::Tensor& b) {
  const double scale = std::max(b.norm().item<double>(), 1e-30);
  return (a - b).norm().item<double>() / scale;
}

template <typename BN>
void check(std::vector<int64_t> tail_shape, int dims, torch::ScalarType dtype, bool affine, bool track, double tol) {
  auto comm = world();
  const int w = comm->size(), r = comm->rank();
  const auto sizes = rank_sizes(w);
  int64_t total = 0, offset = 0;
  for (int i = 0; i < w; ++i) {
    if (i < r) offset += sizes[i];
    total += sizes[i];
  }
  const int64_t c = tail_shape[0];
  std::vector<int64_t> shape{total};
  shape.insert(shape.end(), tail_shape.begin(), tail_shape.end());
  // Same data on every rank (same seed); each rank takes its slice.
  torch::manual_seed(123);
  auto opts = torch::TensorOptions().dtype(dtype);
  torch::Tensor x_all = torch::randn(shape, opts) * 2 + 0.5;
  torch::Tensor gy_all = torch::randn(shape, opts);
  torch::Tensor w0 = torch::rand({c}, opts) + 0.5, b0 = torch::randn({c}, opts);

  auto bn_opts = torch::nn::BatchNormOptions(c).affine(affine).track_running_stats(track).momentum(0.3);
  BN ref(bn_opts);
  ref->to(dtype);
  SyncBatchNorm sync(bn_opts, dims);
  sync->to(dtype);
  sync->set_communicator(comm);
  if (affine) {
    torch::NoGradGuard g;
    ref->weight.copy_(w0), ref->bias.copy_(b0);
    sync->weight.copy_(w0), sync->bias.copy_(b0);
  }

  torch::Tensor x_ref = x_all.clone().requires_grad_(true);
  torch::Tensor y_ref;
  for (int it = 0; it < 2; ++it) y_ref = ref->forward(x_ref);  // two forwards: running stats move twice
  (y_ref * gy_all).sum().backward();

  torch::Tensor x_mine = x_all.narrow(0, offset, sizes[r]).clone().requires_grad_(true);
  torch::Tensor y_mine;
  for (int it = 0; it < 2; ++it) y_mine = sync->forward(x_mine);
  (y_mine * gy_all.narrow(0, offset, sizes[r])).sum().backward();

  if (sizes[r] > 0) {
    EXPECT_LE(rel(y_mine, y_ref.narrow(0, offset, sizes[r])), tol) << "output, rank " << r;
    EXPECT_LE(rel(x_mine.grad(), x_ref.grad().narrow(0, offset, sizes[r])), tol) << "input gradient, rank " << r;
  } else {
    EXPECT_EQ(y_mine.numel(), 0);
  }
  if (affine) {
    torch::Tensor gw = sync->weight.grad().clone(), gb = sync->bias.grad().clone();
    comm->all_reduce_sum(gw);
    comm->all_reduce_sum(gb);
    EXPECT_LE(rel(gw, ref->weight.grad()), tol) << "weight gradient";
    EXPECT_LE(rel(gb, ref->bias.grad()), tol) << "bias gradient";
  }
  if (track) {
    EXPECT_LE(rel(sync->running_mean, ref->running_mean), tol) << "running mean";
    EXPECT_LE(rel(sync->running_var, ref->running_var), tol) << "running var";
    EXPECT_TRUE(torch::equal(sync->num_batches_tracked, ref->num_batches_tracked));
    // Eval mode uses the running statistics, like BatchNorm, and communicates nothing.
    sync->eval(), ref->eval();
    torch::NoGradGuard g;
    EXPECT_LE(rel(sync->forward(x_all), ref->forward(x_all)), tol) << "eval output";
  }
}

TEST(SyncBatchNorm, EqualsBatchNormOnConcatenatedBatchFloat64) {
  for (bool affine : {true, false})
    for (bool track : {true, false}) {
      SCOPED_TRACE(::testing::Message() << "affine " << affine << " track " << track);
      check<torch::nn::BatchNorm1d>({5}, 1, torch::kFloat64, affine, track, 1e-10);
      check<torch::nn::BatchNorm1d>({4, 6}, 1, torch::kFloat64, affine, track, 1e-10);
      check<torch::nn::BatchNorm2d>({3, 4, 5}, 2, torch::kFloat64, affine, track, 1e-10);
      check<torch::nn::BatchNorm3d>({2, 3, 2, 4}, 3, torch::kFloat64, affine, track, 1e-10);
    }
}

TEST(SyncBatchNorm, EqualsBatchNormOnConcatenatedBatchFloat32) {
  check<torch::nn::BatchNorm2d>({3, 4, 5}, 2, torch::kFloat32, true, true, 1e-5);
  check<torch::nn::BatchNorm1d>({7}, 1, torch::kFloat32, true, true, 1e-5);
}

TEST(SyncBatchNorm, TrainingAtWRanksEqualsBatchNormOnTheFullBatch) {
  // One micro-step per window (B = W·m): the W slots of the micro-step are the whole batch, so
  // syncbatch at W ranks must equal batch norm in one process with m = B.
  const int w = MpiEnv::get().size();
  const int64_t m = 4, b = w * m;
  const std::vector<std::string> base = {"--dataset", "fashion-mnist", "--model", "fmnist-cnn", "--dtype", "float64",
                                         "--global-batch", std::to_string(b), "--max-steps", "4", "--optimizer", "sgd",
                                         "--lr", "0.1", "--momentum", "0.9"};
  const auto ref = testing::run_vdp(with(base, {"--norm", "batch", "--micro-batch", std::to_string(b)}));
  const auto got = testing::run_vdp(with(base, {"--norm", "syncbatch", "--micro-batch", std::to_string(m)}), world());
  EXPECT_LE(testing::rel_diff(got.params, ref.params), 1e-10) << "W=" << w;
}

}  // namespace
}  // namespace vdp

namespace vdp {
namespace {

using testing::with;
using testing::world;

TEST(SyncBatchNorm, EmptySlotsKeepEveryRankInStep) {
  // m = 1, B = 2W − 1: K = 2 and the second micro-step has W − 1 samples, so one rank's slot is
  // empty on every step. That rank must still run forward and backward (the collectives inside
  // SyncBatchNorm), or the job would hang; and the ranks must end with identical parameters.
  const int w = MpiEnv::get().size();
  if (w < 2) GTEST_SKIP() << "needs 2 or more ranks";
  Config cfg = testing::config_from({"--dataset", "fashion-mnist", "--model", "fmnist-cnn", "--norm", "syncbatch",
                                     "--global-batch", std::to_string(2 * w - 1), "--micro-batch", "1", "--max-steps",
                                     "3", "--lr", "0.01", "--quiet", "--eval=false"});
  Task task = make_task(cfg);
  auto comm = world();
  Trainer trainer(cfg, task, comm);
  int empty = 0;
  trainer.on_slot([&](int64_t, int64_t, int64_t, const std::vector<int64_t>& ids) { empty += ids.empty(); });
  TrainResult r = trainer.fit();
  EXPECT_TRUE(std::isfinite(r.last_loss));
  EXPECT_EQ(comm->all_reduce_host({static_cast<double>(empty)})[0], 3.0) << "one empty slot per step";
  const auto ref = comm->broadcast_host({r.params_sum, r.params_l2}, 0);
  EXPECT_EQ(ref[0], r.params_sum);
  EXPECT_EQ(ref[1], r.params_l2);
}

}  // namespace
}  // namespace vdp
