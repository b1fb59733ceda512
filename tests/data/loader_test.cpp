// The background producer (data/loader.h): the same slots and batches, in the same order, as
// gathering in the loop, at any depth and start step; empty slots; a dataset error rethrown at its
// own slot with its own type; gathering really runs ahead of the consumer; early destruction joins;
// and a whole training run is bit-identical with and without it.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "../train/train_test_util.h"
#include "vdp/core/error.h"
#include "vdp/data/loader.h"
#include "vdp/data/resident.h"

namespace vdp {
namespace {

std::shared_ptr<Dataset> numbered(int64_t n) {
  // Sample i is the row (i, 2i, 3i) with label i: a batch says exactly which samples it holds.
  auto i = torch::arange(n, torch::kFloat64);
  return std::make_shared<TensorDataset>(torch::stack({i, 2 * i, 3 * i}, 1), torch::arange(n, torch::kInt64));
}

// Every slot of `rank` for global steps [first, end), gathered in the loop (the reference).
std::vector<LoadedSlot> inline_slots(const Dataset& d, const Plan& plan, int rank, int64_t first, int64_t end,
                                     bool skip_empty) {
  std::vector<LoadedSlot> out;
  const int64_t per_epoch = plan.steps_per_epoch();
  for (int64_t g = first; g < end; ++g)
    for (int64_t k = 0; k < plan.micro_steps(g % per_epoch); ++k) {
      LoadedSlot s;
      s.epoch = g / per_epoch, s.epoch_step = g % per_epoch, s.k = k;
      s.ids = plan.slot(s.epoch, s.epoch_step, k, rank);
      if (!(s.ids.empty() && skip_empty)) s.batch = d.get(s.ids);
      out.push_back(s);
    }
  return out;
}

void expect_same(const LoadedSlot& got, const LoadedSlot& want, const std::string& where) {
  EXPECT_EQ(got.epoch, want.epoch) << where;
  EXPECT_EQ(got.epoch_step, want.epoch_step) << where;
  EXPECT_EQ(got.k, want.k) << where;
  EXPECT_EQ(got.ids, want.ids) << where;
  ASSERT_EQ(got.batch.x.defined(), want.batch.x.defined()) << where;
  if (want.batch.x.defined()) {
    EXPECT_TRUE(torch::equal(got.batch.x, want.batch.x)) << where;
    EXPECT_TRUE(torch::equal(got.batch.y, want.batch.y)) << where;
  }
}

TEST(Loader, SameSlotsAndBatchesAsGatheringInTheLoopAtEveryDepth) {
  // N = 37, B = 10, W = 2, m = 3: K = 2, uneven slots, a short last step, 3 epochs of 4 steps.
  auto data = numbered(37);
  const Plan plan(PlanParams{37, 10, 2, 3, 5, false, true});
  for (int rank : {0, 1})
    for (int64_t first : {0, 3, 5})
      for (int64_t depth : {0, 1, 2, 5}) {
        const auto want = inline_slots(*data, plan, rank, first, 12, true);
        BatchLoader loader(data, plan, rank, first, 12, torch::kCPU, {depth, true});
        for (size_t i = 0; i < want.size(); ++i)
          expect_same(loader.next(), want[i],
                      "rank " + std::to_string(rank) + " first " + std::to_string(first) + " depth " +
                          std::to_string(depth) + " slot " + std::to_string(i));
        EXPECT_THROW(loader.next(), InternalError) << "past the last step";
      }
}

TEST(Loader, EmptySlotsCarryNoBatchOrZeroRows) {
  // N = 5, B = 5, W = 4, m = 1: K = 2 and 8 slots for 5 samples, so 3 slots are empty.
  auto data = numbered(5);
  const Plan plan(PlanParams{5, 5, 4, 1, 1, false, true});
  int empty = 0;
  for (int rank = 0; rank < 4; ++rank) {
    BatchLoader skip(data, plan, rank, 0, 1, torch::kCPU, {2, true});
    BatchLoader rows(data, plan, rank, 0, 1, torch::kCPU, {2, false});
    for (int k = 0; k < 2; ++k) {
      const LoadedSlot a = skip.next(), b = rows.next();
      EXPECT_EQ(a.ids, b.ids);
      if (a.ids.empty()) {
        ++empty;
        EXPECT_FALSE(a.batch.x.defined());
        ASSERT_TRUE(b.batch.x.defined());
        EXPECT_EQ(b.batch.size(), 0);
        EXPECT_EQ(b.batch.x.size(1), 3);
      } else {
        EXPECT_EQ(a.batch.size(), static_cast<int64_t>(a.ids.size()));
      }
    }
  }
  EXPECT_EQ(empty, 3);
}

// A dataset that fails on one sample, as a damaged file would.
class FailsOn : public Dataset {
 public:
  FailsOn(std::shared_ptr<Dataset> inner, int64_t bad) : inner_(std::move(inner)), bad_(bad) {}
  int64_t size() const override { return inner_->size(); }
  Batch get(const std::vector<int64_t>& ids) const override {
    for (int64_t i : ids) VDP_CHECK(i != bad_, "sample ", i, " is damaged");
    return inner_->get(ids);
  }

 private:
  std::shared_ptr<Dataset> inner_;
  int64_t bad_;
};

TEST(Loader, AGatheringErrorIsRethrownAtItsOwnSlot) {
  const Plan plan(PlanParams{37, 10, 1, 4, 5, false, true});
  const int64_t bad = plan.order(0)[13];  // step 1, slot k = 0 (samples 10..13 of the epoch)
  auto data = std::make_shared<FailsOn>(numbered(37), bad);
  for (int64_t depth : {0, 2, 8}) {
    BatchLoader loader(data, plan, 0, 0, 4, torch::kCPU, {depth, true});
    for (int i = 0; i < 3; ++i) EXPECT_NO_THROW(loader.next()) << "step 0, k " << i;
    try {
      loader.next();
      ADD_FAILURE() << "no error at the damaged slot, depth " << depth;
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find("sample " + std::to_string(bad) + " is damaged"), std::string::npos);
    }
  }  // each destructor joins a producer that stopped at the error
}

// Records which slots were gathered, on which thread; get() blocks until released.
class Watched : public Dataset {
 public:
  explicit Watched(std::shared_ptr<Dataset> inner) : inner_(std::move(inner)) {}
  int64_t size() const override { return inner_->size(); }
  Batch get(const std::vector<int64_t>& ids) const override {
    std::unique_lock<std::mutex> lock(mutex_);
    ++gathered_;
    if (std::this_thread::get_id() != main_) ++off_main_;
    cv_.notify_all();
    return inner_->get(ids);
  }
  // Waits until `n` slots have been gathered (false after 10 s).
  bool wait_gathered(int n) const {
    std::unique_lock<std::mutex> lock(mutex_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return gathered_ >= n; });
  }
  int gathered() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return gathered_;
  }
  int off_main() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return off_main_;
  }

 private:
  std::shared_ptr<Dataset> inner_;
  std::thread::id main_ = std::this_thread::get_id();
  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  mutable int gathered_ = 0, off_main_ = 0;
};

TEST(Loader, GathersAheadOnItsOwnThreadAndNoFurtherThanItsDepth) {
  const Plan plan(PlanParams{40, 8, 1, 2, 5, false, true});  // K = 4, 5 steps: 20 slots
  auto data = std::make_shared<Watched>(numbered(40));
  BatchLoader loader(data, plan, 0, 0, 5, torch::kCPU, {3, true});
  // Before the trainer asks for anything, the producer has gathered `depth` slots, and stops there.
  ASSERT_TRUE(data->wait_gathered(3));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(data->gathered(), 3) << "the producer must not run further ahead than its depth";
  for (int i = 0; i < 20; ++i) {
    loader.next();
    // While the consumer holds slot i, the slots up to i + depth are gathered or being gathered.
    EXPECT_TRUE(data->wait_gathered(std::min(20, i + 1 + 3))) << "slot " << i;
  }
  EXPECT_EQ(data->off_main(), 20) << "every slot gathered by the producer thread";
}

TEST(Loader, EndingEarlyJoinsTheProducer) {
  const Plan plan(PlanParams{1000, 100, 1, 1, 5, false, true});
  auto data = numbered(1000);
  const auto t0 = std::chrono::steady_clock::now();
  {
    BatchLoader loader(data, plan, 0, 0, 10, torch::kCPU, {16, true});
    loader.next();
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 30.0);
}

TEST(Loader, TrainingIsBitIdenticalAtEveryPrefetchDepth) {
  // The conv net with BatchNorm at W = 1, uneven micro-batches and a short last window, SGD with
  // momentum: the run must not depend on where its batches were gathered.
  const std::vector<std::string> base = {"--dataset", "bce-toy", "--model", "seed-convnet", "--samples", "53",
                                         "--global-batch", "10", "--micro-batch", "4", "--epochs", "2",
                                         "--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9"};
  const auto ref = testing::run_vdp(testing::with(base, {"--prefetch", "0"}));
  for (const char* depth : {"1", "2", "7"}) {
    const auto got = testing::run_vdp(testing::with(base, {"--prefetch", depth}));
    EXPECT_EQ(testing::rel_diff(got.params, ref.params), 0.0) << "--prefetch " << depth;
    EXPECT_EQ(got.result.last_loss, ref.result.last_loss) << "--prefetch " << depth;
  }
}

// --data-on-device (data/resident.h): the resident set hands out the wrapped dataset's batches bit
// for bit, through the producer at any depth, masks included; samples of more than one shape are
// refused with a UserError naming the option.
TEST(Resident, SameBatchesAsTheWrappedDataset) {
  auto i = torch::arange(29, torch::kFloat32);
  auto data = std::make_shared<TensorDataset>(torch::stack({i, -i}, 1).view({29, 2, 1}), torch::arange(29) % 3,
                                              (torch::arange(29 * 4) % 2).view({29, 4}));
  auto resident = std::make_shared<ResidentDataset>(data, torch::kCPU);
  EXPECT_EQ(resident->size(), 29);
  EXPECT_EQ(resident->bytes(), 29 * (2 * 4 + 8 + 4 * 8));
  for (const std::vector<int64_t>& ids : std::vector<std::vector<int64_t>>{{}, {0}, {28, 3, 3, 17}, {5, 4, 3, 2, 1}}) {
    const Batch a = data->get(ids), b = resident->get(ids);
    EXPECT_TRUE(torch::equal(a.x, b.x) && torch::equal(a.y, b.y) && torch::equal(a.mask, b.mask)) << ids.size();
    EXPECT_EQ(a.x.sizes(), b.x.sizes());
  }
  const Plan plan(PlanParams{29, 8, 2, 3, 7, false, true});
  for (int64_t depth : {0, 2}) {
    LoaderOptions o;
    o.depth = depth;
    BatchLoader loader(resident, plan, 1, 0, 8, torch::kCPU, o);
    const auto want = inline_slots(*data, plan, 1, 0, 8, true);
    for (size_t k = 0; k < want.size(); ++k) expect_same(loader.next(), want[k], "slot " + std::to_string(k));
  }
}

TEST(Resident, SamplesOfManyShapesAreRefused) {
  struct Ragged : Dataset {
    int64_t size() const override { return 3; }
    Batch get(const std::vector<int64_t>& ids) const override {
      const int64_t width = ids.size() == 1 ? 2 : 5;  // one sample alone looks narrower
      return {torch::zeros({static_cast<int64_t>(ids.size()), width}), torch::zeros({static_cast<int64_t>(ids.size())}), {}};
    }
  };
  try {
    ResidentDataset r(std::make_shared<Ragged>(), torch::kCPU);
    FAIL() << "ragged samples were accepted";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("--data-on-device"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace vdp
