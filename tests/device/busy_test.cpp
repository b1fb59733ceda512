// The GPU-busy fraction's arithmetic (device/busy.h): the union of device activity intervals, with
// overlaps (two streams) counted once, touching intervals joined, empty ones ignored. The meter
// itself needs CUDA and CUPTI (run by the GPU bench); on the CPU it is refused with one line.
#include <gtest/gtest.h>

#include "../train/train_test_util.h"
#include "vdp/core/error.h"
#include "vdp/device/busy.h"

namespace vdp {
namespace {

TEST(Busy, UnionOfIntervals) {
  EXPECT_EQ(union_length({}), 0u);
  EXPECT_EQ(union_length({{5, 9}}), 4u);
  // [0,10) and [5,12) overlap: 12; [12,15) touches: 15; [20,21): 16; [30,30) is empty.
  EXPECT_EQ(union_length({{20, 21}, {5, 12}, {0, 10}, {12, 15}, {30, 30}}), 16u);
  // One interval inside another.
  EXPECT_EQ(union_length({{0, 100}, {10, 20}, {50, 60}}), 100u);
  // Disjoint, unsorted.
  EXPECT_EQ(union_length({{40, 45}, {0, 3}, {10, 11}}), 9u);
}

TEST(Busy, RefusedOnTheCpu) {
  try {
    testing::config_from({"--dataset", "regression", "--model", "mlp", "--gpu-busy-steps", "5"});
    FAIL() << "--gpu-busy-steps accepted on the CPU";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("--device cuda"), std::string::npos) << e.what();
  }
  BusyMeter meter(torch::kCPU);
  EXPECT_THROW(meter.start(), UserError);
}

}  // namespace
}  // namespace vdp
