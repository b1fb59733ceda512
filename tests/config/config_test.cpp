#include "vdp/config/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "vdp/core/error.h"

namespace vdp {
namespace {

ParseResult parse(std::vector<std::string> args, const ParseSettings& settings = {}) {
  args.insert(args.begin(), "vdp-train");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return parse_config(static_cast<int>(argv.size()), argv.data(), settings);
}

// The error message for `args`, or "" if they were accepted.
std::string error_of(std::vector<std::string> args) {
  try {
    parse(std::move(args));
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

std::string write_file(const std::string& name, const std::string& text) {
  auto path = (std::filesystem::temp_directory_path() / ("vdp_config_test_" + name)).string();
  std::ofstream(path) << text;
  return path;
}

TEST(Config, DefaultsAreTheDocumentedJob) {
  Config c = parse({}).config;
  EXPECT_EQ(c.dataset, DatasetKind::FashionMnist);
  EXPECT_EQ(c.model, ModelKind::FmnistCnn);
  EXPECT_EQ(c.global_batch, 64);
  EXPECT_EQ(c.micro_batch, 64);
  EXPECT_FALSE(c.drop_last);
}

TEST(Config, CommandLineValuesAreTyped) {
  Config c = parse({"--dataset", "regression", "--model", "mlp", "--global-batch", "96", "--micro-batch=8",
                    "--lr", "0.003", "--nesterov", "--momentum", "0.9", "--optimizer=sgd",
                    "--drop-last", "--dtype", "float64", "--lr-schedule", "cosine", "--warmup-steps", "5"})
                 .config;
  EXPECT_EQ(c.dataset, DatasetKind::Regression);
  EXPECT_EQ(c.global_batch, 96);
  EXPECT_EQ(c.micro_batch, 8);
  EXPECT_DOUBLE_EQ(c.lr, 0.003);
  EXPECT_TRUE(c.nesterov);
  EXPECT_TRUE(c.drop_last);
  EXPECT_EQ(c.dtype, DType::Float64);
  EXPECT_EQ(c.lr_schedule, ScheduleKind::Cosine);
  EXPECT_EQ(c.warmup_steps, 5);
}

TEST(Config, BadValuesNameTheOptionTheValueAndWhatIsAllowed) {
  struct Bad {
    std::vector<std::string> args;
    std::vector<std::string> needles;
  };
  const std::vector<Bad> bad = {
      {{"--micro-batch", "0"}, {"--micro-batch", "0", ">= 1"}},
      {{"--global-batch", "-3"}, {"--global-batch", "-3", ">= 1"}},
      {{"--model", "resnet"}, {"--model", "resnet", "mlp|seed-convnet|fmnist-cnn"}},
      {{"--optimizer", "lamb"}, {"--optimizer", "lamb", "sgd|adam|adamw"}},
      {{"--dataset", "cifar"}, {"--dataset", "cifar", "fashion-mnist|regression|bce-toy"}},
      {{"--lr", "-0.1"}, {"--lr", "-0.1", ">= 0"}},
      {{"--lr", "abc"}, {"lr", "abc"}},
      {{"--bogus", "1"}, {"bogus", "--help"}},
      {{"--data-dir", "/nonexistent/vdp"}, {"--data-dir", "/nonexistent/vdp", "dataset-fashion-mnist"}},
      {{"--nesterov"}, {"--nesterov", "momentum"}},
      {{"--dataset", "regression", "--model", "fmnist-cnn"}, {"--model", "fmnist-cnn", "regression", "mlp"}},
      {{"--norm", "batch", "--model", "mlp"}, {"--norm", "batch"}},
      {{"--config", "/nonexistent/x.ini"}, {"--config", "/nonexistent/x.ini"}},
      {{"--init-weights", "/nonexistent/w.safetensors"}, {"--init-weights", "/nonexistent/w.safetensors"}},
  };
  for (const Bad& b : bad) {
    const std::string msg = error_of(b.args);
    ASSERT_FALSE(msg.empty()) << "accepted: " << b.args[0];
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line expected: " << msg;
    for (const auto& n : b.needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' missing in: " << msg;
    EXPECT_EQ(msg.find('\0'), std::string::npos) << msg;
  }
  // A UTF-8 byte-order mark (Windows editors) is text: read as if it were not there.
  EXPECT_EQ(parse({"--config", write_file("bom.ini", "\xEF\xBB\xBFglobal-batch = 48\n")}).config.global_batch, 48);
}

TEST(Config, IniFileSectionsDottedNamesAndCommandLineWins) {
  const std::string path = write_file("ok.ini",
                                      "# a comment\n"
                                      "seed = 9\n"
                                      "[batch]\n"
                                      "global-batch = 128\n"
                                      "micro-batch = 16   \n"
                                      "\n"
                                      "; another comment\n"
                                      "[optim]\n"
                                      "optimizer = adam\n"
                                      "lr = 0.002\n");
  Config c = parse({"--config", path, "--micro-batch", "32"}).config;
  EXPECT_EQ(c.seed, 9u);
  EXPECT_EQ(c.global_batch, 128);
  EXPECT_EQ(c.micro_batch, 32) << "the command line must win over the file";
  EXPECT_EQ(c.optimizer, OptimizerKind::Adam);
  EXPECT_DOUBLE_EQ(c.lr, 0.002);

  const std::string dotted = write_file("dotted.ini", "batch.global-batch = 40\noptim.lr = 0.5\n");
  Config d = parse({"--config", dotted}).config;
  EXPECT_EQ(d.global_batch, 40);
  EXPECT_DOUBLE_EQ(d.lr, 0.5);
}

TEST(Config, PrintedConfigReadsBackToTheSameValues) {
  Config a = parse({"--dataset", "bce-toy", "--model", "seed-convnet", "--global-batch", "40", "--micro-batch", "4",
                    "--lr", "0.125", "--clip-grad-norm", "2.5", "--lr-schedule", "step", "--seed", "3"})
                 .config;
  const std::string path = write_file("roundtrip.ini", config_to_ini(a));
  Config b = parse({"--config", path}).config;
  EXPECT_EQ(config_to_ini(a), config_to_ini(b));
}

TEST(Config, BadIniFilesNameFileAndLine) {
  struct Bad {
    std::string text;
    std::vector<std::string> needles;
  };
  const std::vector<Bad> bad = {
      {"global-batch = 64\nthis line is wrong\n", {":2:", "malformed line"}},
      {"[batch\nglobal-batch = 64\n", {":1:", "section"}},
      {"[batch]\nfoo = 1\n", {":2:", "unknown option 'foo'"}},
      {"[model]\nlr = 0.1\n", {":2:", "[optim]"}},
      {"micro-batch = 0\n", {"--micro-batch", "0"}},
      {"micro-batch = four\n", {"micro-batch", "four"}},
      {"lr = 0.1\nlr = 0.2\n", {":2:", "twice"}},
      // Not text: the message must not stop at the first NUL (UTF-16 with and without a byte-order mark).
      {std::string("\xFF\xFEl\0r\0 \0=\0 \0\x31\0\n\0", 16), {"UTF-16", "UTF-8"}},
      {std::string("lr = 0.1\nl\0r\0 \0=\0", 18), {":2:", "NUL byte", "UTF-8"}},
  };
  int i = 0;
  for (const Bad& b : bad) {
    const std::string path = write_file("bad" + std::to_string(i++) + ".ini", b.text);
    const std::string msg = error_of({"--config", path});
    ASSERT_FALSE(msg.empty()) << "accepted: " << b.text;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& n : b.needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' missing in: " << msg;
    EXPECT_EQ(msg.find('\0'), std::string::npos) << msg;
  }
  // A UTF-8 byte-order mark (Windows editors) is text: read as if it were not there.
  EXPECT_EQ(parse({"--config", write_file("bom.ini", "\xEF\xBB\xBFglobal-batch = 48\n")}).config.global_batch, 48);
}

TEST(Config, HelpListsEverySection) {
  ParseResult r = parse({"--help"});
  EXPECT_TRUE(r.exit_now);
  for (const char* s : {"[run]", "[data]", "[model]", "[batch]", "[optim]", "[schedule]", "[dist]", "[output]",
                        "--global-batch", "--micro-batch", "--clip-grad-norm"})
    EXPECT_NE(r.text.find(s), std::string::npos) << s;
}

// CLI traps (issue: first use): a bare INI path is the config file, any other bare argument is
// an error, option names are never guessed from a prefix, and --help prints defaults as written and
// enum values whole.
TEST(Config, PositionalIniIsTheConfigFile) {
  const std::string ini = write_file("positional.ini", "[batch]\nglobal-batch = 48\nmicro-batch = 6\n");
  const Config c = parse({ini}).config;
  EXPECT_EQ(c.global_batch, 48);
  EXPECT_EQ(c.micro_batch, 6);
  EXPECT_EQ(c.config_file, ini);
  EXPECT_EQ(config_to_ini(c), config_to_ini(parse({"--config", ini}).config));
  EXPECT_NE(error_of({ini, "other.ini"}).find("more than one argument without an option name"), std::string::npos);
  EXPECT_NE(error_of({ini, "--config", ini}).find("more than once"), std::string::npos);
}

TEST(Config, OptionNamesAreNotGuessedFromPrefixes) {
  EXPECT_NE(error_of({"--epoch", "2"}).find("unrecognised option '--epoch'"), std::string::npos) << error_of({"--epoch", "2"});
  EXPECT_NE(error_of({"--micro", "2"}).find("unrecognised option"), std::string::npos);
  EXPECT_EQ(parse({"--epochs", "2"}).config.epochs, 2);
}

TEST(Config, HelpShowsDefaultsAsWrittenAndValuesWhole) {
  const std::string help = parse({"--help"}).text;
  EXPECT_EQ(help.find("0000000"), std::string::npos) << "float noise in --help";
  EXPECT_EQ(help.find("9999999"), std::string::npos) << "float noise in --help";
  EXPECT_NE(help.find("--beta1 arg (=0.9)"), std::string::npos);
  EXPECT_NE(help.find("--eps arg (=1e-08)"), std::string::npos);
  // Every enum value appears whole (Boost's wrapping once cut "sequence" into "sequen ce").
  for (const char* word : {"fashion-mnist", "regression", "bce-toy", "sequence", "seed-convnet", "fmnist-cnn",
                           "seq-gru", "syncbatch", "micro-step", "adamw", "cosine"})
    EXPECT_NE(help.find(word), std::string::npos) << word;
}

// A program's own defaults (vdp::run's RunSpec::defaults) sit under the INI file and the command
// line, over the built-in defaults; an unknown name is one line.
TEST(Config, ProgramDefaultsRankBelowFileAndCommandLine) {
  ParseSettings s;
  s.program = "my-train";
  s.defaults = {{"global-batch", "96"}, {"micro-batch", "8"}, {"lr", "0.5"}};
  const std::string ini = write_file("defaults.ini", "[batch]\nmicro-batch = 16\n");
  const Config c = parse({ini, "--lr", "0.25"}, s).config;
  EXPECT_EQ(c.global_batch, 96);  // program default
  EXPECT_EQ(c.micro_batch, 16);   // file over program default
  EXPECT_EQ(c.lr, 0.25);          // command line over both
  EXPECT_EQ(parse({}).config.global_batch, 64);  // vdp-train's own default untouched
  s.defaults = {{"global-batchh", "64"}};
  try {
    parse({}, s);
    FAIL() << "an unknown default was accepted";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("my-train: default for unknown option 'global-batchh'"), std::string::npos)
        << e.what();
  }
  EXPECT_NE(parse({"--help"}, s).text.find("usage: my-train "), std::string::npos);
}

// A program with its own task is not held to the built-in dataset/model pairs or data folder.
TEST(Config, OwnTaskSkipsTheBuiltInDatasetChecks) {
  EXPECT_NE(error_of({"--model", "seed-convnet"}).find("does not fit --dataset fashion-mnist"), std::string::npos);
  ParseSettings s;
  s.own_task = true;
  EXPECT_EQ(parse({"--model", "seed-convnet", "--data-dir", "/nonexistent"}, s).config.model, ModelKind::SeedConvnet);
}

// --metrics auto names the file after the INI file and a hash of the training options: other
// options give another file; outputs, epochs and max-steps (a resumed or extended run) do not.
TEST(Config, AutoMetricsFileIsNamedAfterTheRun) {
  const std::string ini = write_file("named_run.ini", "[output]\nmetrics = auto\n");
  const std::string a = parse({ini}).config.metrics;
  EXPECT_EQ(a.rfind("out/vdp_config_test_named_run-", 0), 0u) << a;
  EXPECT_EQ(a.size(), std::string("out/vdp_config_test_named_run-").size() + 8 + std::string(".metrics.jsonl").size());
  EXPECT_EQ(parse({ini, "--epochs", "7", "--max-steps", "9", "--quiet"}).config.metrics, a);
  EXPECT_NE(parse({ini, "--lr", "0.02"}).config.metrics, a);
  EXPECT_NE(parse({ini, "--dataset", "regression", "--model", "mlp"}).config.metrics, a);
  EXPECT_EQ(parse({"--metrics", "auto"}).config.metrics.rfind("out/run-", 0), 0u);
}

}  // namespace
}  // namespace vdp
