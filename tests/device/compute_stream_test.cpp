// Note [one compute stream] and the device of each thread (core/thread_device.h), as far as the CPU
// shows them: the trainer's work, the window's construction (where the reducer takes the gradient
// accumulators) included, runs inside the compute-stream scope, and a window built outside one is
// refused; the rank's main thread binds its device when the communicator is made, and the data
// producer's thread binds it before its first gather. (On a GPU, tests/gpu/gpu_test.cpp captures
// with accumulators kept alive.) Note [last words]: the watchdog's line comes first, and the job
// ends even when the communicator's abort never returns.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <mutex>
#include <thread>

#include "../train/train_test_util.h"
#include "vdp/core/error.h"
#include "vdp/core/thread_device.h"
#include "vdp/data/loader.h"
#include "vdp/device/compute_stream.h"
#include "vdp/dist/last_words.h"
#include "vdp/task/task.h"
#include "vdp/train/window.h"

namespace vdp {
namespace {

TEST(ComputeStream, ScopesNestAndEnd) {
  EXPECT_FALSE(ComputeStreamScope::active());
  {
    const ComputeStreamScope outer(torch::kCPU);
    EXPECT_TRUE(ComputeStreamScope::active());
    { const ComputeStreamScope inner(torch::kCPU); }
    EXPECT_TRUE(ComputeStreamScope::active());
  }
  EXPECT_FALSE(ComputeStreamScope::active());
}

TEST(ComputeStream, TheTrainersWorkRunsInsideTheScopeFromItsConstruction) {
  Config cfg = testing::config_from(testing::with(testing::kRegression, {"--micro-batch", "3", "--overlap=true"}));
  cfg.quiet = true;
  cfg.eval = false;
  Task task = make_task(cfg);
  // The model's forward is the first thing of each micro-step; the loss hook its last host step.
  int inside = 0, outside = 0;
  Trainer t(cfg, task, std::make_shared<SelfCommunicator>());
  EXPECT_FALSE(ComputeStreamScope::active()) << "the constructor's scope leaked";
  t.on_loss([&](const StepRecord&, int64_t, const Batch&, LossSum&) {
    (ComputeStreamScope::active() ? inside : outside) += 1;
  });
  t.fit();
  EXPECT_GT(inside, 0);
  EXPECT_EQ(outside, 0) << "micro-steps outside the compute-stream scope";
  EXPECT_FALSE(ComputeStreamScope::active()) << "fit()'s scope leaked";
}

TEST(ComputeStream, AWindowBuiltOutsideTheScopeIsRefused) {
  // The overlapped reducer takes the accumulators in the window's constructor: they would remember
  // the stream current then.
  Config cfg = testing::config_from(testing::with(testing::kRegression, {"--micro-batch", "3", "--overlap=true"}));
  Task task = make_task(cfg);
  auto comm = std::make_shared<SelfCommunicator>();
  try {
    Window w(cfg, task, comm, nullptr);
    FAIL() << "a window was built outside the compute-stream scope";
  } catch (const InternalError& e) {
    EXPECT_NE(std::string(e.what()).find("compute stream"), std::string::npos) << e.what();
  }
  const ComputeStreamScope scope(torch::kCPU);
  EXPECT_NO_THROW(Window(cfg, task, comm, nullptr));
}

TEST(ThreadDevice, TheMainThreadBindsItsDeviceWhenTheCommunicatorIsMade) {
  // A thread of its own: nothing bound there before.
  std::optional<torch::Device> before, after;
  std::thread([&] {
    before = bound_device();
    Config cfg;
    cfg.device = DeviceKind::Cpu;
    (void)make_communicator(cfg, MpiEnv::get());
    after = bound_device();
  }).join();
  EXPECT_FALSE(before.has_value());
  ASSERT_TRUE(after.has_value()) << "make_communicator did not bind the rank's device";
  EXPECT_EQ(*after, torch::Device(torch::kCPU));
}

// Records, for every gather off the main thread, the device that thread had bound.
struct BindingWatcher : Dataset {
  explicit BindingWatcher(std::shared_ptr<Dataset> inner) : inner_(std::move(inner)) {}
  int64_t size() const override { return inner_->size(); }
  Batch get(const std::vector<int64_t>& ids) const override {
    std::lock_guard<std::mutex> lock(mu_);
    if (std::this_thread::get_id() != main_) seen_.push_back(bound_device());
    return inner_->get(ids);
  }
  std::shared_ptr<Dataset> inner_;
  std::thread::id main_ = std::this_thread::get_id();
  mutable std::mutex mu_;
  mutable std::vector<std::optional<torch::Device>> seen_;
};

TEST(ThreadDevice, TheProducersThreadBindsTheDeviceBeforeItsFirstGather) {
  const Plan plan(PlanParams{40, 8, 1, 2, 5, false, true});
  auto data = std::make_shared<BindingWatcher>(
      std::make_shared<TensorDataset>(torch::arange(40, torch::kFloat64).reshape({40, 1}), torch::zeros({40, 1})));
  {
    BatchLoader loader(data, plan, 0, 0, 2, torch::kCPU, {2, true});
    for (int i = 0; i < 8; ++i) loader.next();
  }
  ASSERT_FALSE(data->seen_.empty()) << "no gather on the producer's thread";
  for (const auto& d : data->seen_) {
    ASSERT_TRUE(d.has_value()) << "the producer gathered on a thread without a bound device";
    EXPECT_EQ(*d, torch::Device(torch::kCPU));
  }
}

TEST(LastWords, TheLineComesFirstAndTheJobEndsWhenTheAbortNeverReturns) {
  struct Ended {};
  std::mutex mu;
  std::vector<std::string> events;
  auto note = [&](const std::string& e) {
    std::lock_guard<std::mutex> lock(mu);
    events.push_back(e);
  };
  auto release = std::make_shared<std::promise<void>>();
  std::shared_future<void> released = release->get_future().share();
  const auto t0 = std::chrono::steady_clock::now();
  try {
    report_then_abort(
        "vdp-train: timeout [rank 1 of 2]: a rank did not arrive",
        [&note, released] {
          note("abort started");
          released.wait();  // a wedged ncclCommAbort
        },
        std::chrono::milliseconds(300), [&] { note("job ended"), throw Ended{}; },
        [&](const std::string& line) { note("said: " + line); });
  } catch (const Ended&) {
  }
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  release->set_value();
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0], "said: vdp-train: timeout [rank 1 of 2]: a rank did not arrive");
  EXPECT_EQ(events[1], "abort started");
  EXPECT_EQ(events[2], "job ended");
  EXPECT_GE(waited, 0.29);
  EXPECT_LT(waited, 5.0) << "the job waited for the abort";
}

TEST(LastWords, AnAbortThatReturnsEndsTheJobAtOnce) {
  struct Ended {};
  const auto t0 = std::chrono::steady_clock::now();
  bool aborted = false;
  try {
    report_then_abort("line", [&] { aborted = true; }, std::chrono::milliseconds(5000), [] { throw Ended{}; },
                      [](const std::string&) {});
  } catch (const Ended&) {
  }
  EXPECT_TRUE(aborted);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 2.0);
}

}  // namespace
}  // namespace vdp
