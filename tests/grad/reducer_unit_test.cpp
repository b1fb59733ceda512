// Bucket layout and the hook mechanism in one process.
#include "vdp/grad/reducer.h"

#include <gtest/gtest.h>

#include <ATen/ATen.h>

namespace vdp {
namespace {

// Counts the collectives it is asked for, in order.
class RecordingCommunicator : public SelfCommunicator {
 public:
  void all_reduce_sum(const torch::Tensor& t) override { sizes.push_back(t.numel()); }
  std::vector<int64_t> sizes;
};

TEST(ReducerUnit, BucketsTileTheBufferAndLaunchInOrderDuringTheLastBackward) {
  // Parameters of 100, 50, 30 and 20 floats; layout is reversed: [20, 30, 50, 100] + 5 scalars.
  std::vector<torch::Tensor> params;
  for (int64_t n : {100, 50, 30, 20}) params.push_back(torch::randn({n}).requires_grad_(true));
  FlatGrads flat(params, {"a", "b", "c", "d"});
  EXPECT_EQ(flat.slot(3).offset, 0);
  EXPECT_EQ(flat.slot(0).offset, 100);
  auto comm = std::make_shared<RecordingCommunicator>();
  WindowReducer reducer(flat, params, comm, /*bucket_bytes=*/200, /*overlap=*/true);
  // 200 bytes = 50 floats: [20+30] [50] [100 + 5 scalars]
  ASSERT_EQ(reducer.num_buckets(), 3u);
  EXPECT_EQ(reducer.bytes(), (200 + 5) * 4);

  auto loss = [&] {
    torch::Tensor s = torch::zeros({});
    for (auto& p : params) s = s + p.sum();
    return s;
  };
  loss().backward();  // not armed: nothing is reduced
  EXPECT_TRUE(comm->sizes.empty());
  reducer.arm();
  loss().backward();  // armed: every bucket completes during backward
  EXPECT_EQ(comm->sizes, (std::vector<int64_t>{50, 50, 105}));
  reducer.finish();
  EXPECT_EQ(comm->sizes.size(), 3u) << "finish must not reduce twice";
  // Gradients accumulated across both backwards, in place in the buffer.
  EXPECT_TRUE(torch::equal(params[0].grad(), torch::full({100}, 2.0)));

  // A parameter that gets no gradient: its bucket (and those after) start in finish(), in order.
  comm->sizes.clear();
  reducer.arm();
  (params[3].sum() + params[2].sum()).backward();  // only the first bucket completes
  EXPECT_EQ(comm->sizes, (std::vector<int64_t>{50}));
  reducer.finish();
  EXPECT_EQ(comm->sizes, (std::vector<int64_t>{50, 50, 105}));

  WindowReducer plain(flat, params, comm, 1 << 20, /*overlap=*/false);
  EXPECT_EQ(plain.num_buckets(), 1u);
}

}  // namespace
}  // namespace vdp
