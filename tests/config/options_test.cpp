// The option table is the only list of options: for every row, each list derived from it (--help,
// config_to_ini, rank agreement, the --metrics auto hash, the checkpoint's resume record, the options
// reference) holds the option exactly when the row says so. A row missing from any of them, or a
// consumer with a list of its own, fails here.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "../train/train_test_util.h"
#include "vdp/ckpt/checkpoint.h"
#include "vdp/config/config.h"
#include "vdp/dist/communicator.h"
#include "vdp/train/rank_agreement.h"
#include "vdp/train/trainer.h"

namespace vdp {
namespace {

const std::vector<std::string> kBase = {"--dataset", "regression", "--model", "mlp", "--samples", "40",
                                        "--global-batch", "8", "--micro-batch", "4", "--max-steps", "1", "--quiet"};

// Another value of the same type than `text` (not validated: the lists are checked, not the run).
std::string other_value(const OptionInfo& o, const std::string& text) {
  if (o.type == "flag" || o.type == "bool") return text == "true" ? "false" : "true";
  if (o.type == "integer") return std::to_string(std::stoll(text) + 1);
  if (o.type == "integer|auto") return text == "auto" ? "5" : "auto";
  if (o.type == "number") {
    Config c;
    set_option_text(c, o.name, std::to_string(std::stod(text) * 2 + 1));
    return option_text(c, o.name);
  }
  if (o.type == "choice") {
    for (const auto& ch : o.choices)
      if (ch != text) return ch;
  }
  return text + "/changed";
}

bool has(const std::vector<std::pair<std::string, std::string>>& items, const std::string& key) {
  for (const auto& [k, v] : items)
    if (k == key) return true;
  return false;
}

TEST(Options, EveryDerivedListHoldsEveryRowItsTraitsName) {
  const Config base = testing::config_from(kBase);
  const Task task = make_task(base);
  const std::string help = parse_config(2, std::vector<const char*>{"vdp-train", "--help"}.data()).text;
  const std::string reference = options_reference();
  const auto base_items = agreement_items(base, task);
  std::set<std::string> names;
  for (const OptionInfo& o : option_table()) {
    SCOPED_TRACE(o.name);
    EXPECT_TRUE(names.insert(o.name).second) << "two rows named " << o.name;
    EXPECT_NE(help.find("--" + o.name + " "), std::string::npos) << "--help lacks it";
    EXPECT_NE(reference.find("| `--" + o.name + "` |"), std::string::npos) << "the reference lacks it";
    if (o.traits & kAction) {
      EXPECT_EQ(config_to_ini(base).find("\n" + o.name + " = "), std::string::npos) << "an action in the INI file";
      continue;
    }
    EXPECT_NE(config_to_ini(base).find("\n" + o.name + " = "), std::string::npos) << "config_to_ini lacks it";
    // Change this option alone; each derived list must see the change exactly when the row says so.
    Config c = base;
    const std::string now = option_text(c, o.name), changed = other_value(o, now);
    ASSERT_NE(changed, now);
    set_option_text(c, o.name, changed);
    EXPECT_EQ(option_text(c, o.name), changed);
    EXPECT_NE(config_to_ini(c).find("\n" + o.name + " = " + changed + "\n"), std::string::npos);
    EXPECT_EQ(has(agreement_items(c, task), "--" + o.name), (o.traits & kAgree) != 0);
    EXPECT_EQ(agreement_items(c, task) != base_items, (o.traits & kAgree) != 0) << "rank agreement";
    EXPECT_EQ(auto_metrics_path(c) != auto_metrics_path(base), (o.traits & kShapes) != 0) << "--metrics auto hash";
    EXPECT_EQ(has(options_with(c, kResume), o.name), (o.traits & kResume) != 0);
  }
}

// What a checkpoint records for the resume check is the kResume rows, no more and no less.
TEST(Options, CheckpointsRecordEveryResumeOption) {
  const auto dir = std::filesystem::temp_directory_path() / "vdp_options_test_ckpt";
  remove_tree(dir.string());  // Note [std::filesystem::remove_all]
  const Config cfg = testing::config_from(testing::with(kBase, {"--checkpoint-dir", dir.string()}));
  {
    Trainer t(cfg, make_task(cfg), std::make_shared<SelfCommunicator>());
    t.fit();
  }
  std::ifstream in(dir / "step-0000000001" / "state.json");
  ASSERT_TRUE(in.good());
  nlohmann::json st;
  in >> st;
  std::set<std::string> recorded, expected;
  for (const auto& [k, v] : st.at("options").items()) recorded.insert(k);
  for (const OptionInfo& o : option_table())
    if (o.traits & kResume) expected.insert(o.name);
  EXPECT_EQ(recorded, expected);
  remove_tree(dir.string());  // Note [std::filesystem::remove_all]
}

// configs/README.md is the options reference generated from the table.
TEST(Options, ReferenceDocumentIsTheTable) {
  const std::string path = std::string(VDP_SOURCE_DIR) + "/configs/README.md";
  if (std::getenv("VDP_UPDATE_REFERENCE")) std::ofstream(path) << options_reference();
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), options_reference())
      << path << " differs from the option table: regenerate it with VDP_UPDATE_REFERENCE=1 "
      << "build/tests/vdp_unit_tests --gtest_filter=Options.ReferenceDocumentIsTheTable";
}

}  // namespace
}  // namespace vdp
