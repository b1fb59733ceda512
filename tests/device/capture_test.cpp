// Note [a failed capture] (device/capture.h) with a fake CUDA: whichever step fails (the work, the
// end, both), the stream leaves capture mode, the allocators stop routing to the pool, the pool is
// released and the graph is reset, each exactly once and never after the graph took the pool over;
// the message names the first error and the right remedy. A capture that succeeds is left alone.
#include <gtest/gtest.h>

#include <stdexcept>

#include "vdp/core/error.h"
#include "vdp/device/capture.h"

namespace vdp {
namespace {

// What a capture holds in PyTorch and CUDA, as counters; `end_fails` is CUDA invalidating the capture
// (CUDA ends the stream's capture, PyTorch's capture_end() throws before the allocators are told).
struct FakeCapture : CaptureSteps {
  bool end_fails = false, end_leaves_capturing = false;
  bool stream_capturing = false, routing = false, graph_owns_pool = false;
  int pools = 0, begins = 0, abandons = 0, discards = 0, routing_stops = 0, releases = 0;

  void begin() override {
    ++begins, ++pools;
    routing = true;
    stream_capturing = true;
  }
  void end() override {
    if (end_fails) {
      stream_capturing = end_leaves_capturing;
      throw std::runtime_error("CUDA error: operation failed due to a previous error during capture\nmore");
    }
    stream_capturing = false;
    routing = false;
    graph_owns_pool = true;
  }
  bool capturing() override { return stream_capturing; }
  void abandon() override { ++abandons, stream_capturing = false; }
  void stop_routing() override {
    if (!routing) throw std::runtime_error("endAllocatePool: not currently recording to mempool_id");
    ++routing_stops, routing = false;
  }
  void release_pool() override {
    if (pools == 0) throw std::runtime_error("release of a released pool");
    ++releases, --pools;
  }
  void discard() override {
    ++discards;
    if (graph_owns_pool) --pools, graph_owns_pool = false;
  }
  void expect_clean() const {
    EXPECT_FALSE(stream_capturing) << "the stream is still capturing";
    EXPECT_FALSE(routing) << "the allocators still route to the capture's pool";
    EXPECT_EQ(pools, 0) << "the capture's pool was not released (or twice)";
    EXPECT_EQ(discards, 1) << "the graph object kept the failed capture";
  }
};

std::string capture_message(FakeCapture& fake, const std::function<void()>& work) {
  try {
    capture_or_clean_up(fake, work, "the micro-step", "SYNC-FIX", "OTHER-FIX");
  } catch (const InternalError& e) {
    return e.what();
  }
  return "";
}

TEST(Capture, ASuccessfulCaptureIsLeftToTheGraph) {
  FakeCapture fake;
  int ran = 0;
  EXPECT_EQ(capture_message(fake, [&] { ++ran; }), "");
  EXPECT_EQ(ran, 1);
  EXPECT_TRUE(fake.graph_owns_pool);
  EXPECT_EQ(fake.pools, 1);
  EXPECT_EQ(fake.discards + fake.releases + fake.routing_stops + fake.abandons, 0);
}

TEST(Capture, AHostSynchronizationInTheWorkLeavesNoCaptureState) {
  FakeCapture fake;
  fake.end_fails = true;  // CUDA invalidated the capture at the refused call
  const std::string msg = capture_message(fake, [] {
    throw std::runtime_error("CUDA error: operation not permitted when stream is capturing\nCUDA kernel errors...");
  });
  fake.expect_clean();
  EXPECT_EQ(fake.routing_stops, 1);
  EXPECT_EQ(fake.releases, 1);
  EXPECT_EQ(msg, "--cuda-graphs: the micro-step could not be captured: CUDA error: operation not permitted when "
                 "stream is capturing; SYNC-FIX");
}

TEST(Capture, AnInvalidatedCaptureAtTheEndLeavesNoCaptureState) {
  for (bool leaves_capturing : {false, true}) {
    SCOPED_TRACE(leaves_capturing ? "the stream still capturing" : "CUDA ended the capture");
    FakeCapture fake;
    fake.end_fails = true;
    fake.end_leaves_capturing = leaves_capturing;
    const std::string msg = capture_message(fake, [] {});
    fake.expect_clean();
    EXPECT_EQ(fake.abandons, leaves_capturing ? 1 : 0);
    EXPECT_NE(msg.find("could not be captured: CUDA error: operation failed due to a previous error during capture; "
                       "OTHER-FIX"),
              std::string::npos)
        << msg;
  }
}

TEST(Capture, AnErrorOfTheWorkIsNamedNotTheCapturesEnd) {
  // Not a refused call: the work's own error, and the general remedy (not "synchronizes with the host").
  FakeCapture fake;
  fake.end_fails = true;
  const std::string msg =
      capture_message(fake, [] { throw std::runtime_error("Expected all tensors to be on the same device"); });
  fake.expect_clean();
  EXPECT_NE(msg.find("captured: Expected all tensors to be on the same device; OTHER-FIX"), std::string::npos) << msg;
}

TEST(Capture, AWorkErrorAfterWhichTheCaptureStillEndsLeavesThePoolToTheGraph) {
  // The end succeeded (the graph took the pool over): only the graph's reset may release it.
  FakeCapture fake;
  const std::string msg = capture_message(fake, [] { throw std::runtime_error("a host-side failure"); });
  fake.expect_clean();
  EXPECT_EQ(fake.releases, 0);
  EXPECT_EQ(fake.routing_stops, 0);
  EXPECT_NE(msg.find("captured: a host-side failure; OTHER-FIX"), std::string::npos) << msg;
}

}  // namespace
}  // namespace vdp
