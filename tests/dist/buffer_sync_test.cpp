// BatchNorm running statistics stay identical across ranks with --norm batch (Note [buffer
// averaging] in grad/buffer_sync.h): without the averaging each rank's statistics follow only its
// own micro-batches and the ranks drift apart (this test fails on such code at W >= 2).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <filesystem>

#include "../train/train_test_util.h"
#include "vdp/dist/mpi_env.h"

namespace vdp {
namespace {

using testing::with;
using testing::world;

TEST(BufferSync, BatchNormBuffersEqualOnEveryRankAfterTraining) {
  if (!std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist not installed";
  auto comm = world();
  // K = 2 at W = 2 and 3 (m = 8, B = 48); a short last micro-step would do no harm either.
  Config cfg = testing::config_from({"--model", "fmnist-cnn", "--norm", "batch", "--global-batch", "48",
                                     "--micro-batch", "8", "--max-steps", "5", "--lr", "0.05", "--seed", "3"});
  cfg.quiet = true;
  cfg.eval = false;
  Task task = make_task(cfg);
  Trainer trainer(cfg, task, comm);
  std::vector<torch::Tensor> before;
  for (const auto& b : trainer.model().buffers()) before.push_back(b.clone());
  trainer.fit();
  const auto after = trainer.model().buffers();
  ASSERT_FALSE(after.empty());
  bool moved = false;
  for (size_t i = 0; i < after.size(); ++i) {
    moved |= !torch::equal(after[i], before[i]);
    torch::Tensor mine = after[i].detach().clone().contiguous();
    torch::Tensor ref = mine.clone();
    comm->broadcast(ref, 0);
    EXPECT_TRUE(torch::equal(mine, ref)) << "buffer " << i << " differs from rank 0's on rank " << comm->rank()
                                         << " (max diff " << (mine.to(torch::kFloat64) - ref.to(torch::kFloat64)).abs().max().item<double>() << ")";
  }
  EXPECT_TRUE(moved) << "training did not update the running statistics";
  // Evaluation uses the same model on every rank: every rank's own full evaluation agrees.
  const EvalResult ev = trainer.evaluate();
  const std::vector<double> ref = comm->broadcast_host({ev.loss, ev.accuracy}, 0);
  EXPECT_EQ(ev.loss, ref[0]);
  EXPECT_EQ(ev.accuracy, ref[1]);
}

TEST(BufferSync, AveragedStatisticsAreTheMeanOverRanks) {
  // One window at K = 1: each rank's running mean after its one forward, averaged, is what every
  // rank holds; computed here independently from the slots each rank saw.
  if (!std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist not installed";
  auto comm = world();
  const int w = comm->size();
  Config cfg = testing::config_from({"--model", "fmnist-cnn", "--norm", "batch", "--dtype", "float64",
                                     "--global-batch", std::to_string(4 * w), "--micro-batch", "4", "--max-steps",
                                     "1", "--lr", "0", "--seed", "11"});
  cfg.quiet = true;
  cfg.eval = false;
  Task task = make_task(cfg);
  Trainer trainer(cfg, task, comm);
  // The first BatchNorm sees the first conv's output; recompute it from this rank's slot.
  std::vector<int64_t> ids;
  trainer.on_slot([&](int64_t, int64_t, int64_t, const std::vector<int64_t>& s) { ids = s; });
  // The expected local update comes from a twin of the initial model run on this rank's slot.
  std::shared_ptr<Net> local = make_task(cfg).model;
  {
    torch::NoGradGuard ng;
    auto src_p = trainer.model().parameters(), dst_p = local->parameters();
    for (size_t i = 0; i < src_p.size(); ++i) dst_p[i].copy_(src_p[i]);
    auto src_b = trainer.model().buffers(), dst_b = local->buffers();
    for (size_t i = 0; i < src_b.size(); ++i) dst_b[i].copy_(src_b[i]);
  }
  trainer.fit();
  ASSERT_EQ(ids.size(), 4u);
  local->train();
  {
    torch::NoGradGuard ng;
    local->forward(task.train->get(ids));
  }
  torch::Tensor local_rm;
  for (const auto& kv : local->named_buffers())
    if (kv.key().find("running_mean") != std::string::npos) {
      local_rm = kv.value().clone();
      break;
    }
  torch::Tensor sum = local_rm.clone();
  comm->all_reduce_sum(sum);
  torch::Tensor got;
  for (const auto& kv : trainer.model().named_buffers())
    if (kv.key().find("running_mean") != std::string::npos) {
      got = kv.value();
      break;
    }
  EXPECT_LE((got - sum / w).abs().max().item<double>(), 1e-12);
}

}  // namespace
}  // namespace vdp
