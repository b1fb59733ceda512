#include "vdp/ckpt/safetensors.h"

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "vdp/core/error.h"
#include "vdp/nn/models.h"

namespace vdp {
namespace {

std::string tmp(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("vdp_st_test_" + name)).string();
}

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::vector<uint8_t> make_file(const std::string& header, size_t body) {
  std::vector<uint8_t> out(8 + header.size() + body, 0);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  std::memcpy(out.data() + 8, header.data(), header.size());
  return out;
}

std::string error_of(const std::vector<uint8_t>& bytes) {
  try {
    parse_safetensors(bytes.data(), bytes.size(), "x.safetensors");
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, RoundTripKeepsNamesShapesDtypesAndValues) {
  torch::manual_seed(0);
  NamedTensors in = {{"a.weight", torch::randn({3, 4})},
                     {"b", torch::randn({5}, torch::kFloat64)},
                     {"c", torch::arange(6, torch::kInt64).view({2, 3})},
                     {"empty", torch::zeros({0, 2})}};
  const std::string path = tmp("rt.safetensors");
  save_safetensors(path, in, {{"format", "pt"}});
  std::map<std::string, std::string> meta;
  NamedTensors out = load_safetensors(path, &meta);
  EXPECT_EQ(meta["format"], "pt");
  ASSERT_EQ(out.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(out[i].first, in[i].first);
    EXPECT_EQ(out[i].second.scalar_type(), in[i].second.scalar_type());
    EXPECT_TRUE(torch::equal(out[i].second, in[i].second)) << in[i].first;
  }
}

TEST(Safetensors, ModuleStateLoadsBackAndRejectsAnotherModel) {
  Config c;
  c.model = ModelKind::FmnistCnn;
  c.norm = NormKind::Batch;
  c.seed = 1;
  auto a = make_model(c);
  const std::string path = tmp("model.safetensors");
  save_safetensors(path, module_state(*a));
  c.seed = 2;
  auto b = make_model(c);
  load_module_state(*b, path);
  auto pa = a->parameters(), pb = b->parameters();
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i]));

  c.norm = NormKind::None;  // other parameter set: conv biases, no BN
  auto other = make_model(c);
  auto before = other->parameters()[0].clone();
  try {
    load_module_state(*other, path);
    FAIL() << "loaded weights of another model";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
  }
  EXPECT_TRUE(torch::equal(before, other->parameters()[0])) << "a rejected file must not be half-loaded";
}

TEST(Safetensors, RejectsCorruptFiles) {
  EXPECT_NE(error_of({1, 2, 3}).find("not a safetensors"), std::string::npos);
  auto huge = make_file("{}", 0);
  huge[7] = 0x7f;  // a header length of ~9e18 bytes
  EXPECT_NE(error_of(huge).find("header"), std::string::npos);
  EXPECT_NE(error_of(make_file("{\"a\": 1", 0)).find("malformed"), std::string::npos);
  EXPECT_NE(error_of(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4)).find("outside"),
            std::string::npos);
  EXPECT_NE(error_of(make_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)).find("need"),
            std::string::npos);
  EXPECT_NE(error_of(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                               12))
                .find("overlap"),
            std::string::npos);
  EXPECT_NE(error_of(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 12)).find("after"),
            std::string::npos);
  EXPECT_NE(error_of(make_file(R"({"a":{"dtype":"X9","shape":[2],"data_offsets":[0,8]}})", 8)).find("dtype"),
            std::string::npos);
  EXPECT_NE(error_of(make_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8))
                .find("absurd"),
            std::string::npos);

  // A real file cut short.
  const std::string path = tmp("cut.safetensors");
  save_safetensors(path, {{"w", torch::randn({100})}});
  auto bytes = file_bytes(path);
  bytes.resize(bytes.size() - 10);
  EXPECT_NE(error_of(bytes).find("outside"), std::string::npos);
}

}  // namespace
}  // namespace vdp
