// --micro-batch auto (train/micro_batch_search.h): the chosen size fits the budget by an independent
// measurement and is within a factor 2 of the largest that fits (found here by a scan); training with
// it equals the full batch; the trials leave no trace; a budget too small for one sample is exit 3;
// a resume takes the checkpoint's choice unless --search-again.
#include "vdp/train/micro_batch_search.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "train_test_util.h"
#include "vdp/ckpt/checkpoint.h"
#include "vdp/core/error.h"
#include "vdp/data/dataset.h"
#include "vdp/device/memory.h"
#include "vdp/nn/models.h"
#include "vdp/task/loss.h"

namespace vdp {
namespace {

using testing::config_from;
using testing::rel_diff;
using testing::with;

// float64 mlp on regression: ~20 KB of activations per sample, so a budget of some MiB fits hundreds.
const std::vector<std::string> kBase = {"--dataset", "regression", "--model", "mlp", "--hidden", "512",
                                        "--samples", "4096", "--global-batch", "2048", "--dtype", "float64",
                                        "--optimizer", "adam", "--lr", "0.001", "--max-steps", "2", "--seed", "5"};

// The bytes a micro-step of c samples needs, measured here without the search's code: parameters
// and buffers, gradients, Adam's two moments, the producer's batches ahead, and the micro-step's
// peak above what was live.
int64_t measured_total(const Config& cfg, Task& task, int64_t c) {
  const torch::Device cpu(torch::kCPU);
  int64_t params = 0, buffers = 0;
  for (auto& p : task.model->parameters()) {
    params += p.numel() * static_cast<int64_t>(p.element_size());
    p.mutable_grad() = torch::zeros_like(p);
  }
  for (auto& b : task.model->buffers()) buffers += b.numel() * static_cast<int64_t>(b.element_size());
  std::vector<int64_t> ids(c);
  for (int64_t i = 0; i < c; ++i) ids[i] = i % task.train->size();
  const int64_t before = live_memory(cpu);
  reset_peak_memory(cpu);
  int64_t batch_bytes = 0;
  {
    Batch b = task.train->get(ids);
    batch_bytes = b.x.nbytes() + b.y.nbytes();
    task.loss(task.model->forward(b), b).sum.backward();
  }
  const int64_t step = peak_memory(cpu) - before;
  for (auto& p : task.model->parameters()) p.mutable_grad() = torch::Tensor();
  return params + buffers + params /*gradients*/ + 2 * params /*Adam*/ + cfg.prefetch * batch_bytes + step;
}

TEST(MicroBatchAuto, ChoiceFitsAndIsNearTheLargestThatFits) {
  for (const char* budget : {"12M", "40M"}) {
    SCOPED_TRACE(budget);
    const Config cfg = config_from(with(kBase, {"--micro-batch", "auto", "--memory-budget", budget}));
    Trainer trainer(cfg, make_task(cfg), std::make_shared<SelfCommunicator>());
    const MicroBatchChoice& c = trainer.micro_batch_choice();
    ASSERT_EQ(c.fits.size(), 1u);
    const int64_t chosen = c.fits[0];
    EXPECT_LE(c.peak_bytes, c.budget_bytes);
    EXPECT_EQ(c.budget_bytes, parse_memory_budget(budget).bytes);
    EXPECT_EQ(trainer.plan().full_micro_steps(), (2048 + c.micro_batch - 1) / c.micro_batch);

    // The largest size that fits, by a scan of this test's own measurements.
    Config plain = cfg;
    plain.micro_batch = 1;
    Task task = make_task(plain);
    EXPECT_LE(measured_total(plain, task, chosen), c.budget_bytes) << "chosen " << chosen;
    int64_t largest = 0;
    for (int64_t s = 32; s <= 2048; s += 32)
      if (measured_total(plain, task, s) <= c.budget_bytes) largest = s;
    ASSERT_GT(largest, 0);
    EXPECT_GE(chosen, largest / 2) << "largest that fits " << largest;
    EXPECT_LT(chosen, 2048) << "the budget must bind for this test to mean something";
    RecordProperty(std::string("chosen_") + budget, std::to_string(chosen));
    RecordProperty(std::string("largest_") + budget, std::to_string(largest));
  }
}

TEST(MicroBatchAuto, TrainsLikeTheFullBatchAndLeavesNoTrace) {
  const auto args = with(kBase, {"--micro-batch", "auto", "--memory-budget", "12M"});
  torch::manual_seed(11);
  const auto before = torch::rand({4}, torch::kFloat64);  // the generator's draws without a search
  torch::manual_seed(11);
  const Config cfg = config_from(args);
  Trainer trainer(cfg, make_task(cfg), std::make_shared<SelfCommunicator>());
  const int64_t m = trainer.micro_batch_choice().micro_batch;
  ASSERT_GT(trainer.plan().full_micro_steps(), 1);
  // make_task seeds the generator itself; what matters is the state the search leaves behind, which
  // training draws from: the same run with m given by hand must give the same bits.
  const auto full = testing::run_vdp(with(kBase, {"--micro-batch", "2048"}));
  const auto chosen = testing::run_vdp(with(kBase, {"--micro-batch", std::to_string(m)}));
  const auto searched = testing::run_vdp(args);
  EXPECT_TRUE(torch::equal(searched.params, chosen.params)) << "the search changed the run";
  EXPECT_LE(rel_diff(searched.params, full.params), 1e-10);
  (void)before;
}

TEST(MicroBatchAuto, TrialsPutRunningStatisticsGradientsAndGeneratorsBack) {
  Config cfg = config_from({"--micro-batch", "auto", "--memory-budget", "64M", "--global-batch", "64", "--model",
                            "mlp", "--dataset", "regression"});
  Task task;
  torch::manual_seed(1);
  task.train = std::make_shared<TensorDataset>(torch::randn({64, 1, 28, 28}), torch::randint(0, 10, {64}));
  task.model = std::make_shared<FmnistCnn>(NormKind::Batch);
  task.loss = cross_entropy_sum;
  task.model->train();
  std::vector<torch::Tensor> buffers;
  for (const auto& b : task.model->buffers()) buffers.push_back(b.clone());
  torch::manual_seed(2);
  const auto expected = [] {
    auto gen_copy = torch::rand({3});
    return gen_copy;
  }();
  torch::manual_seed(2);
  const MicroBatchChoice c = search_micro_batch(cfg, task, *std::make_shared<SelfCommunicator>());
  EXPECT_GT(c.trials, 2);
  EXPECT_TRUE(torch::equal(torch::rand({3}), expected)) << "the trials moved the generator";
  size_t i = 0;
  for (const auto& b : task.model->buffers()) EXPECT_TRUE(torch::equal(b, buffers[i++])) << "buffer " << i;
  for (const auto& p : task.model->parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(MicroBatchAuto, OneSampleOverTheBudgetIsExit3) {
  const Config cfg = config_from(with(kBase, {"--micro-batch", "auto", "--memory-budget", "1M"}));
  try {
    Trainer trainer(cfg, make_task(cfg), std::make_shared<SelfCommunicator>());
    ADD_FAILURE() << "a budget below the model's own size was accepted";
  } catch (const IoError& e) {
    EXPECT_EQ(e.exit_code(), 3);
    EXPECT_NE(std::string(e.what()).find("one sample does not fit"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--memory-budget 1M"), std::string::npos) << e.what();
  }
}

TEST(MicroBatchAuto, ResumeTakesTheCheckpointsChoiceUnlessAsked) {
  const std::string dir = ::testing::TempDir() + "vdp_auto_m_resume";
  remove_tree(dir);
  std::vector<std::string> base(kBase.begin(), kBase.end() - 4);  // without --max-steps, --seed
  base = with(base, {"--seed", "5", "--micro-batch", "auto", "--checkpoint-dir", dir});
  int64_t m = 0;
  {
    Config cfg = config_from(with(base, {"--memory-budget", "12M", "--max-steps", "2"}));
    cfg.quiet = true, cfg.eval = false;
    Trainer trainer(cfg, make_task(cfg), std::make_shared<SelfCommunicator>());
    m = trainer.micro_batch_choice().micro_batch;
    trainer.fit();
  }
  // Another budget: a search would choose another size; the checkpoint's is taken.
  const auto resumed = with(base, {"--resume", "auto", "--memory-budget", "40M"});
  {
    Config cfg = config_from(with(resumed, {"--max-steps", "3"}));
    cfg.quiet = true, cfg.eval = false;
    Trainer trainer(cfg, make_task(cfg), std::make_shared<SelfCommunicator>());
    EXPECT_EQ(trainer.micro_batch_choice().micro_batch, m);
    EXPECT_NE(trainer.micro_batch_choice().from_checkpoint.find("step-0000000002"), std::string::npos);
    EXPECT_EQ(trainer.micro_batch_choice().trials, 0);
  }
  {
    Config cfg = config_from(with(resumed, {"--max-steps", "3", "--search-again"}));
    cfg.quiet = true, cfg.eval = false;
    Trainer trainer(cfg, make_task(cfg), std::make_shared<SelfCommunicator>());
    EXPECT_TRUE(trainer.micro_batch_choice().from_checkpoint.empty());
    EXPECT_GT(trainer.micro_batch_choice().micro_batch, m);
  }
  remove_tree(dir);
}

TEST(MicroBatchAuto, OptionsAndBudgets) {
  EXPECT_EQ(config_from({"--micro-batch", "auto"}).micro_batch, 0);
  EXPECT_EQ(config_from({"--micro-batch", "7"}).micro_batch, 7);
  for (const char* bad : {"0", "-3", "autox", "", "1.5"})
    EXPECT_THROW(config_from({"--micro-batch", bad}), UserError) << bad;
  EXPECT_THROW(config_from({"--micro-batch", "auto", "--chunk", "4"}), UserError);
  EXPECT_THROW(config_from({"--micro-batch", "auto", "--model", "fmnist-cnn", "--norm", "syncbatch"}), UserError);
  EXPECT_DOUBLE_EQ(parse_memory_budget("0.5").fraction, 0.5);
  EXPECT_EQ(parse_memory_budget("6G").bytes, int64_t{6} << 30);
  EXPECT_EQ(parse_memory_budget("512M").bytes, int64_t{512} << 20);
  EXPECT_EQ(parse_memory_budget("2000000").bytes, 2000000);
  for (const char* bad : {"0", "-1", "1.5", "12X", "nan", "inf", "G", ""})
    EXPECT_THROW(parse_memory_budget(bad), UserError) << bad;
}

}  // namespace
}  // namespace vdp
