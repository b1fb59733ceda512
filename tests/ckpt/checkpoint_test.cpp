// Checkpoints: round trip, integrity checks, and exact resume (bit-identical on the CPU).
#include "vdp/ckpt/checkpoint.h"

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>

#include "../train/train_test_util.h"
#include "vdp/core/error.h"

namespace vdp {
namespace {

namespace fs = std::filesystem;

std::string fresh_dir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("vdp_ckpt_test_" + name);
  std::string cmd = "rm -rf '" + p.string() + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  return p.string();
}

CheckpointData sample_data() {
  CheckpointData d;
  d.weights = {{"w", torch::arange(12, torch::kFloat32).view({3, 4})}};
  d.optimizer = {{"0.momentum_buffer", torch::ones({3, 4})}};
  d.trainer = {{"rng.cpu", torch::arange(5, torch::kUInt8)}};
  d.state = {{"global_batch", 10}};
  return d;
}

std::vector<std::string> with_args(std::vector<std::string> base, const std::vector<std::string>& more) {
  // Options given again replace the earlier value (the parser refuses an option twice).
  for (size_t i = 0; i < more.size(); ++i) {
    auto it = std::find(base.begin(), base.end(), more[i]);
    const bool valued = i + 1 < more.size() && more[i + 1].rfind("--", 0) != 0;
    if (it != base.end() && valued) *(it + 1) = more[i + 1];
    else if (it == base.end()) {
      base.push_back(more[i]);
      if (valued) base.push_back(more[i + 1]);
    }
    if (valued) ++i;
  }
  return base;
}

std::string error_of(const std::string& path) {
  try {
    load_checkpoint(path);
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

TEST(Checkpoint, RoundTripKeepLastAndLatest) {
  const std::string dir = fresh_dir("roundtrip");
  for (int64_t step : {2, 4, 6, 8}) save_checkpoint(dir, step, sample_data(), 2);
  EXPECT_FALSE(fs::exists(dir + "/step-0000000002"));
  EXPECT_FALSE(fs::exists(dir + "/step-0000000004"));
  EXPECT_EQ(latest_checkpoint(dir), dir + "/step-0000000008");
  CheckpointData d = load_checkpoint(latest_checkpoint(dir));
  EXPECT_TRUE(torch::equal(d.weights[0].second, sample_data().weights[0].second));
  EXPECT_EQ(d.state["step"], 8);
  EXPECT_EQ(d.state["global_batch"], 10);
  // A folder without manifest (a writer that died) is not a checkpoint.
  fs::create_directories(dir + "/step-0000000009");
  EXPECT_EQ(latest_checkpoint(dir), dir + "/step-0000000008");
  EXPECT_NE(error_of(dir + "/step-0000000009").find("no manifest"), std::string::npos);
}

// A resumed run that reaches a step it had saved before replaces that checkpoint by an atomic
// exchange: afterwards the folder holds the new one, and nothing else is left behind.
TEST(Checkpoint, SavingAStepAgainReplacesItWhole) {
  const std::string dir = fresh_dir("replace");
  save_checkpoint(dir, 5, sample_data(), 0);
  CheckpointData newer = sample_data();
  newer.weights = {{"w", torch::full({3, 4}, 7.0f)}};
  save_checkpoint(dir, 5, newer, 0);
  const CheckpointData back = load_checkpoint(dir + "/step-0000000005");
  EXPECT_TRUE(torch::equal(back.weights[0].second, torch::full({3, 4}, 7.0f)));
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"step-0000000005"});
}

// State, manifest and folder name must name the same step: a renamed folder is refused.
TEST(Checkpoint, RenamedFolderIsRefused) {
  const std::string dir = fresh_dir("renamed");
  save_checkpoint(dir, 5, sample_data(), 0);
  fs::rename(dir + "/step-0000000005", dir + "/step-0000000009");
  EXPECT_NE(error_of(dir + "/step-0000000009").find("state.json says step 5"), std::string::npos)
      << error_of(dir + "/step-0000000009");
}

TEST(Checkpoint, CorruptFilesAreRejectedNamingTheFile) {
  const std::string dir = fresh_dir("corrupt");
  const std::string path = save_checkpoint(dir, 1, sample_data(), 0);
  const std::string weights = path + "/weights.safetensors";
  std::string bytes;
  {
    std::ifstream f(weights, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  // One byte flipped in the data: the CRC catches it.
  std::string flipped = bytes;
  flipped[flipped.size() - 3] ^= 0x10;
  std::ofstream(weights, std::ios::binary | std::ios::trunc) << flipped;
  std::string msg = error_of(path);
  EXPECT_NE(msg.find("weights.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("CRC"), std::string::npos) << msg;
  // Truncated: the size check catches it.
  std::ofstream(weights, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() / 2);
  msg = error_of(path);
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  // Restored, it loads again.
  std::ofstream(weights, std::ios::binary | std::ios::trunc) << bytes;
  EXPECT_EQ(error_of(path), "");
}

const std::vector<std::string> kArgs = {"--dataset", "regression", "--model", "mlp", "--samples", "103",
                                        "--global-batch", "10", "--micro-batch", "3", "--epochs", "3",
                                        "--optimizer", "adamw", "--lr", "0.01", "--lr-schedule", "cosine",
                                        "--warmup-steps", "4", "--clip-grad-norm", "1.0", "--hidden", "16"};

struct Crash {};

TEST(Checkpoint, ExactResumeIsBitIdentical) {
  const auto straight = testing::run_vdp(kArgs);
  ASSERT_EQ(straight.result.steps, 33);

  const std::string dir = fresh_dir("exact");
  auto args = kArgs;
  for (const char* a : {"--checkpoint-dir", dir.c_str(), "--checkpoint-every", "5"}) args.push_back(a);
  {
    // A run that dies after step 17 (mid-epoch): its newest checkpoint is step 15.
    Config cfg = testing::config_from(args);
    cfg.quiet = true, cfg.eval = false;
    Trainer t(cfg, make_task(cfg), std::make_shared<SelfCommunicator>());
    t.on_step([](const StepRecord& r) {
      if (r.step + 1 == 17) throw Crash{};
    });
    EXPECT_THROW(t.fit(), Crash);
  }
  ASSERT_EQ(latest_checkpoint(dir), dir + "/step-0000000015");
  args.push_back("--resume");
  args.push_back("auto");
  Config cfg = testing::config_from(args);
  cfg.quiet = true, cfg.eval = false;
  Trainer resumed(cfg, make_task(cfg), std::make_shared<SelfCommunicator>());
  EXPECT_EQ(resumed.start_step(), 15);
  TrainResult r = resumed.fit();
  EXPECT_EQ(r.steps, 33);
  EXPECT_TRUE(torch::equal(testing::flat_params(resumed.model()), straight.params))
      << "relative difference " << testing::rel_diff(testing::flat_params(resumed.model()), straight.params);
}

TEST(Checkpoint, ResumeRefusesAnotherGlobalBatchOrModel) {
  const std::string dir = fresh_dir("mismatch");
  auto args = kArgs;
  for (const char* a : {"--checkpoint-dir", dir.c_str(), "--max-steps", "2"}) args.push_back(a);
  testing::run_vdp(args);
  auto expect_refused = [&](std::vector<std::string> change, const std::string& needle) {
    // Replace the values of the options named in `change` (pairs), then resume.
    auto a = args;
    for (size_t i = 0; i + 1 < change.size(); i += 2) {
      auto it = std::find(a.begin(), a.end(), change[i]);
      if (it != a.end()) *(it + 1) = change[i + 1];
      else a.insert(a.end(), {change[i], change[i + 1]});
    }
    a.push_back("--resume");
    a.push_back("auto");
    try {
      testing::run_vdp(a);
      ADD_FAILURE() << "resumed despite " << needle;
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(dir), std::string::npos) << "must name the checkpoint: " << e.what();
    }
  };
  expect_refused({"--global-batch", "20"}, "--global-batch");
  expect_refused({"--hidden", "8"}, "shape");
  expect_refused({"--optimizer", "sgd", "--momentum", "0.9"}, "--optimizer");
}

// What a resume promises to refuse and once took: a plain-SGD checkpoint under momentum (and the
// reverse), other data of the same size, a checkpoint without its generator state, and counters
// no run can reach. The damaged checkpoints are written whole (a valid manifest), as a hand edit
// or another program's writer would leave them.
TEST(Checkpoint, ResumeRefusesOtherStateDataAndImpossibleCounters) {
  const std::string dir = fresh_dir("refuse_more");
  const std::vector<std::string> sgd = {"--dataset", "regression", "--model", "mlp", "--samples", "64",
                                        "--global-batch", "16", "--micro-batch", "4", "--max-steps", "4",
                                        "--hidden", "8", "--checkpoint-dir", dir};
  testing::run_vdp(with_args(sgd, {"--max-steps", "2"}));
  auto refused = [&](const std::vector<std::string>& more, const std::string& needle) {
    try {
      testing::run_vdp(with_args(sgd, with_args(more, {"--resume", "auto"})));
      ADD_FAILURE() << "resumed despite " << needle;
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(dir), std::string::npos) << "must name the checkpoint: " << e.what();
    }
  };
  refused({"--momentum", "0.9"}, "momentum on or off");
  const std::string step2 = latest_checkpoint(dir);
  const CheckpointData good = load_checkpoint(step2);
  auto rewrite = [&](const std::function<void(CheckpointData&)>& damage) {
    CheckpointData d = good;
    damage(d);
    save_checkpoint(dir, 2, d, 0);
  };
  rewrite([](CheckpointData& d) { d.state["data_digest"] = "0123"; });
  refused({}, "other training data");
  rewrite([](CheckpointData& d) { d.state["optimizer_steps"] = -3; });
  refused({}, "impossible counters");
  rewrite([](CheckpointData& d) { d.state["skipped_steps"] = 7; });
  refused({}, "impossible counters");
  rewrite([](CheckpointData& d) {
    d.trainer.erase(std::remove_if(d.trainer.begin(), d.trainer.end(), [](const auto& t) { return t.first == "rng.cpu"; }),
                    d.trainer.end());
  });
  refused({}, "random-generator state");
  rewrite([](CheckpointData&) {});
  EXPECT_NO_THROW(testing::run_vdp(with_args(sgd, {"--resume", "auto"}))) << "the intact checkpoint must resume";
}

}  // namespace
}  // namespace vdp
