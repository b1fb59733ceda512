// Collectives with rank-dependent inputs and closed-form results, on the backend the launch gives
// (MPI under mpirun, self otherwise): all-reduce, reduce-scatter and all-gather, broadcast.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "vdp/config/config.h"
#include "vdp/dist/factory.h"
#include "vdp/dist/mpi_env.h"
#include "vdp/grad/flat_grads.h"
#include "vdp/grad/reducer.h"
#include "../train/train_test_util.h"

namespace vdp {
namespace {

std::shared_ptr<Communicator> comm() {
  static std::shared_ptr<Communicator> c = [] {
    Config cfg;
    cfg.device = DeviceKind::Cpu;
    cfg.backend = BackendKind::Auto;
    return make_communicator(cfg, MpiEnv::get());
  }();
  return c;
}

TEST(Communicator, BackendMatchesLaunch) {
  const MpiEnv& env = MpiEnv::get();
  EXPECT_EQ(comm()->size(), env.size());
  EXPECT_EQ(comm()->rank(), env.rank());
  EXPECT_EQ(comm()->name(), env.size() > 1 ? "mpi" : "self");
}

TEST(Communicator, AllReduceSumClosedForm) {
  const int64_t w = comm()->size(), r = comm()->rank();
  for (auto dtype : {torch::kFloat32, torch::kFloat64, torch::kInt64, torch::kInt32})
    for (int64_t n : {1, 7, 1000, 1 << 20}) {
      // Rank r holds (r + 1) * (i + 1) at position i: the sum is (i + 1) * W (W + 1) / 2.
      auto i = torch::arange(n, torch::kInt64);
      auto t = ((i + 1) * (r + 1)).to(dtype);
      comm()->all_reduce_sum(t);
      auto expected = ((i + 1) * (w * (w + 1) / 2)).to(dtype);
      ASSERT_TRUE(torch::equal(t, expected)) << "dtype " << dtype << " n " << n;
      // And the n(n-1)/2 pattern: rank r contributes r.
      auto u = torch::full({n}, static_cast<double>(r), torch::TensorOptions().dtype(dtype));
      comm()->all_reduce_sum(u);
      ASSERT_TRUE(torch::equal(u, torch::full({n}, static_cast<double>(w * (w - 1) / 2), u.options())));
    }
}

TEST(Communicator, ReduceScatterAndAllGatherClosedForm) {
  const int64_t w = comm()->size(), r = comm()->rank();
  for (auto dtype : {torch::kFloat32, torch::kFloat64})
    for (int64_t c : {1, 16, 1000}) {
      // Rank r holds (r + 1) * (i + 1) at i: chunk r of the sum is (i + 1) * W (W + 1) / 2 there.
      const auto i = torch::arange(c * w, torch::kInt64);
      auto t = ((i + 1) * (r + 1)).to(dtype);
      comm()->reduce_scatter_sum(t);
      const auto want = ((i + 1) * (w * (w + 1) / 2)).to(dtype);
      EXPECT_TRUE(torch::equal(t.narrow(0, r * c, c), want.narrow(0, r * c, c))) << dtype << " c=" << c;
      // All-gather: chunk q of every rank's tensor becomes rank q's chunk q, here (q + 1) * 1000 + i.
      auto g = torch::full({c * w}, -1.0, torch::TensorOptions().dtype(dtype));
      g.narrow(0, r * c, c).copy_(((r + 1) * 1000 + i.narrow(0, r * c, c)).to(dtype));
      comm()->all_gather(g);
      const auto owner = torch::div(i, c, "floor");
      EXPECT_TRUE(torch::equal(g, ((owner + 1) * 1000 + i).to(dtype))) << dtype << " c=" << c;
    }
}

TEST(Communicator, BroadcastFromEveryRoot) {
  const int w = comm()->size();
  for (int root = 0; root < w; ++root) {
    auto t = torch::full({33}, static_cast<double>(comm()->rank() * 10 + 1), torch::kFloat64);
    comm()->broadcast(t, root);
    ASSERT_TRUE(torch::equal(t, torch::full({33}, root * 10.0 + 1, torch::kFloat64))) << "root " << root;
  }
  auto host = comm()->broadcast_host({1.0 * comm()->rank(), 2.5}, w - 1);
  EXPECT_EQ(host[0], w - 1.0);
  EXPECT_EQ(host[1], 2.5);
  auto sums = comm()->all_reduce_host({1.0, 1.0 * comm()->rank()});
  EXPECT_EQ(sums[0], w);
  EXPECT_EQ(sums[1], w * (w - 1) / 2.0);
  comm()->barrier();
}

// The window's totals through a real reduction (Note [exact window totals]): every rank holds
// 2^24 + r + 1 items, so the float32 sum of single counts would be inexact; the split is exact.
TEST(Communicator, WindowTotalsAreExactAcrossRanks) {
  const int64_t w = comm()->size(), r = comm()->rank();
  std::vector<torch::Tensor> params{torch::zeros({11}).requires_grad_(true)};
  FlatGrads flat(params, {"w"});
  WindowReducer reducer(flat, params, comm(), 1 << 20, /*overlap=*/false);
  flat.zero();
  flat.add_loss({torch::tensor(0.25f * static_cast<float>(r + 1)), torch::tensor(16777216.0f)});
  flat.add_loss({torch::tensor(0.0f), torch::tensor(static_cast<float>(r + 1))});
  flat.stage_loss();
  reducer.finish();
  const testing::Totals t = testing::totals_of(flat);
  EXPECT_EQ(t.count, 16777216.0 * w + w * (w + 1) / 2.0);
  EXPECT_NEAR(t.loss_sum, 0.25 * w * (w + 1) / 2.0, 1e-9);
}

}  // namespace
}  // namespace vdp
