#include "vdp/data/idx.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "vdp/core/error.h"
#include "vdp/data/datasets.h"

namespace vdp {
namespace {

std::vector<unsigned char> idx_bytes(std::vector<uint32_t> dims, size_t data_bytes, unsigned char type = 0x08) {
  std::vector<unsigned char> b = {0, 0, type, static_cast<unsigned char>(dims.size())};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(d >> s));
  for (size_t i = 0; i < data_bytes; ++i) b.push_back(static_cast<unsigned char>(i * 7));
  return b;
}

std::string write_gz(const std::string& name, const std::vector<unsigned char>& bytes) {
  auto path = (std::filesystem::temp_directory_path() / ("vdp_idx_test_" + name)).string();
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
  return path;
}

std::string error_of(const std::string& path, int rank) {
  try {
    read_idx_gz(path, rank);
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

TEST(Idx, ReadsValidFile) {
  auto path = write_gz("ok.gz", idx_bytes({3, 4, 5}, 60));
  torch::Tensor t = read_idx_gz(path, 3);
  ASSERT_EQ(t.sizes(), torch::IntArrayRef({3, 4, 5}));
  EXPECT_EQ(t.flatten()[11].item<int>(), (11 * 7) & 0xff);
}

TEST(Idx, RejectsCorruptFilesWithClearMessages) {
  EXPECT_NE(error_of(write_gz("short.gz", idx_bytes({3, 4, 5}, 59)), 3).find("truncated"), std::string::npos);
  EXPECT_NE(error_of(write_gz("long.gz", idx_bytes({3, 4, 5}, 61)), 3).find("trailing"), std::string::npos);
  EXPECT_NE(error_of(write_gz("rank.gz", idx_bytes({60}, 60)), 3).find("dimensions"), std::string::npos);
  EXPECT_NE(error_of(write_gz("type.gz", idx_bytes({60}, 60, 0x0D)), 1).find("type"), std::string::npos);
  auto bad_magic = idx_bytes({60}, 60);
  bad_magic[0] = 0x1f;
  EXPECT_NE(error_of(write_gz("magic.gz", bad_magic), 1).find("magic"), std::string::npos);
  EXPECT_NE(error_of(write_gz("tiny.gz", {0, 0}), 1).find("too short"), std::string::npos);
  EXPECT_NE(error_of(write_gz("hdr.gz", {0, 0, 8, 3, 0, 0}), 3).find("header"), std::string::npos);
  EXPECT_NE(error_of("/nonexistent/vdp.gz", 1).find("cannot open"), std::string::npos);

  // A gzip stream cut in the middle: zlib must report it, not a silently short array.
  auto good = write_gz("cut_src.gz", idx_bytes({200, 28, 28}, 200 * 28 * 28));
  std::ifstream in(good, std::ios::binary);
  std::vector<char> gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto cut = (std::filesystem::temp_directory_path() / "vdp_idx_test_cut.gz").string();
  std::ofstream(cut, std::ios::binary).write(gz.data(), static_cast<std::streamsize>(gz.size() / 2));
  const std::string msg = error_of(cut, 3);
  EXPECT_FALSE(msg.empty());
  EXPECT_NE(msg.find(cut), std::string::npos) << msg;
}

TEST(Idx, FashionMnistFromTheDebianPackage) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  DatasetPair d = load_fashion_mnist(dir, torch::kFloat32);
  ASSERT_EQ(d.train->size(), 60000);
  ASSERT_EQ(d.test->size(), 10000);
  Batch b = d.train->get({0, 59999});
  EXPECT_EQ(b.x.sizes(), torch::IntArrayRef({2, 1, 28, 28}));
  // Normalized with the training set's mean and std: the whole set has mean ~0 and std ~1.
  Batch all = d.train->get([] {
    std::vector<int64_t> v(60000);
    for (int64_t i = 0; i < 60000; ++i) v[i] = i;
    return v;
  }());
  EXPECT_NEAR(all.x.mean().item<double>(), 0.0, 1e-3);
  EXPECT_NEAR(all.x.std().item<double>(), 1.0, 1e-3);
  EXPECT_EQ(all.y.bincount().min().item<int64_t>(), 6000);  // 10 balanced classes
}

}  // namespace
}  // namespace vdp
