// Collectives with rank-dependent inputs and closed-form results, on the backend the launch gives
// (MPI under mpirun, self otherwise).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "vdp/config/config.h"
#include "vdp/dist/factory.h"
#include "vdp/dist/mpi_env.h"

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

}  // namespace
}  // namespace vdp
