// The micro-batch as this rank's free variable (train/window.h): slots run in chunks of at most
// --chunk samples with the result of whole slots, and an out-of-memory error in a micro-step is
// recovered on that rank alone by redoing the window in halved chunks (Note [out-of-memory redo] in
// src/train/window.cpp), with the result of a run that never ran out. Faults are injected: a throw of
// c10::OutOfMemoryError after forward (the loss hook) or half-way through backward (a gradient hook
// on a parameter in the middle of the model) whenever a forward holds more than a set number of rows.
#include <gtest/gtest.h>

#include <c10/util/Exception.h>

#include <string>
#include <vector>

#include "chunk_test_util.h"
#include "vdp/core/error.h"

namespace vdp {
namespace {

using testing::rel_diff;
using testing::with;

// N = 45, B = 12, m = 5: K = 3 with slots of 4 samples (uneven against m), a last step of 9.
const std::vector<std::string> kBase = {"--dataset", "regression", "--model", "mlp", "--samples", "45",
                                        "--global-batch", "12", "--micro-batch", "5", "--epochs", "2",
                                        "--hidden", "16", "--dtype", "float64", "--seed", "3"};
const std::vector<std::vector<std::string>> kOptimizers = {
    {"--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9", "--clip-grad-norm", "0.5"},
    {"--optimizer", "adam", "--lr", "0.01", "--clip-grad-norm", "1.0"},
    {"--optimizer", "adamw", "--lr", "0.01", "--weight-decay", "0.05"},
};
// Token-weighted sequences with padding: items are real tokens.
const std::vector<std::string> kTokens = {"--dataset", "sequence", "--model", "seq-gru", "--samples", "37",
                                          "--global-batch", "8", "--micro-batch", "4", "--epochs", "2",
                                          "--dtype", "float64", "--hidden", "12", "--optimizer", "adam", "--lr",
                                          "0.01"};

TEST(Chunks, ChunkedSlotsEqualWholeSlots) {
  for (const auto& o : kOptimizers) {
    const auto args = with(kBase, o);
    const auto whole = testing::run_chunked(args);
    for (const char* c : {"1", "2", "3"}) {
      SCOPED_TRACE(std::string(o[1]) + " chunk " + c);
      const auto got = testing::run_chunked(with(args, {"--chunk", c}));
      EXPECT_LE(rel_diff(got.params, whole.params), 1e-10);
      EXPECT_GT(got.forwards, whole.forwards) << "the chunks must really run apart";
    }
  }
  const auto whole = testing::run_chunked(kTokens);
  EXPECT_LE(rel_diff(testing::run_chunked(with(kTokens, {"--chunk", "1"})).params, whole.params), 1e-10);
}

TEST(Chunks, RefusedWhereBatchNormSeesTheChunk) {
  for (const char* norm : {"batch", "syncbatch"}) {
    try {
      testing::config_from({"--model", "fmnist-cnn", "--norm", norm, "--micro-batch", "8", "--chunk", "2"});
      ADD_FAILURE() << "--chunk accepted with --norm " << norm;
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find("--chunk"), std::string::npos) << e.what();
    }
  }
}

// The clean run and runs that run out of memory above 3 rows (m = 5: every slot of 4 first), in
// forward and half-way through backward, at one step or from the start: equal within 1e-10.
TEST(OutOfMemory, RecoveredRunEqualsTheCleanRun) {
  for (const auto& o : kOptimizers) {
    const auto args = with(kBase, o);
    const auto clean = testing::run_chunked(args);
    for (auto where : {testing::Fault::Forward, testing::Fault::Backward}) {
      for (int64_t from_step : {0, 4}) {
        SCOPED_TRACE(std::string(o[1]) + (where == testing::Fault::Forward ? " forward" : " backward") + " from step " +
                     std::to_string(from_step));
        const auto got = testing::run_chunked(args, testing::FaultPlan{where, 3, from_step});
        EXPECT_LE(rel_diff(got.params, clean.params), 1e-10);
        // One recovery: chunks of 5 hold the slots of 4 whole (4 > 3 rows); ceil(5 / 2) = 3 fits.
        EXPECT_EQ(got.recoveries, (std::vector<std::pair<int64_t, int64_t>>{{5, 3}}));
        ASSERT_EQ(got.recovery_steps.size(), 1u);
        EXPECT_EQ(got.recovery_steps.front(), from_step);
        EXPECT_EQ(got.final_chunk, 3);
      }
    }
  }
  // Token-weighted sequences with padding, down to chunks of one sequence (4 -> 2 -> 1).
  const auto clean = testing::run_chunked(kTokens);
  const auto got = testing::run_chunked(kTokens, testing::FaultPlan{testing::Fault::Backward, 1, 2});
  EXPECT_LE(rel_diff(got.params, clean.params), 1e-10);
  EXPECT_EQ(got.recoveries, (std::vector<std::pair<int64_t, int64_t>>{{4, 2}, {2, 1}}));
}

TEST(OutOfMemory, NotEvenOneSampleFitsEndsTheRunWithAnIoError) {
  try {
    testing::run_chunked(kBase, testing::FaultPlan{testing::Fault::Forward, 0, 0});
    ADD_FAILURE() << "a model that fits no sample trained";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("even with chunks of 1 sample"), std::string::npos) << e.what();
  }
}

TEST(OutOfMemory, BatchNormCannotBeRedoneAndSaysWhy) {
  const std::vector<std::string> bn = {"--model", "fmnist-cnn", "--norm", "batch", "--global-batch", "8",
                                       "--micro-batch", "8", "--max-steps", "2"};
  try {
    testing::run_chunked(bn, testing::FaultPlan{testing::Fault::Forward, 4, 0});
    ADD_FAILURE() << "a BatchNorm model was redone in chunks";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("BatchNorm"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace vdp
