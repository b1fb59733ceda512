#include "vdp/data/datasets.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>

#include "vdp/core/error.h"
#include "vdp/data/idx.h"

namespace vdp {
namespace {

std::shared_ptr<Dataset> fmnist_split(const std::string& dir, const std::string& prefix, torch::ScalarType dtype) {
  namespace fs = std::filesystem;
  const std::string images_path = (fs::path(dir) / (prefix + "-images-idx3-ubyte.gz")).string();
  const std::string labels_path = (fs::path(dir) / (prefix + "-labels-idx1-ubyte.gz")).string();
  torch::Tensor images = read_idx_gz(images_path, 3);
  torch::Tensor labels = read_idx_gz(labels_path, 1);
  VDP_CHECK(images.size(0) == labels.size(0), "'", images_path, "' holds ", images.size(0), " images but '",
            labels_path, "' holds ", labels.size(0), " labels; the files do not belong together");
  VDP_CHECK(images.size(1) == 28 && images.size(2) == 28, "'", images_path, "' holds ", images.size(1), "x",
            images.size(2), " images; Fashion-MNIST images are 28x28");
  VDP_CHECK(labels.max().item<int64_t>() <= 9, "'", labels_path, "' holds a label above 9; the file is corrupt");
  // Normalize once at load: batches are then plain index_selects.
  torch::Tensor x = images.to(torch::kFloat64).div_(255.0).sub_(0.2860).div_(0.3530).unsqueeze(1).to(dtype);
  return std::make_shared<TensorDataset>(x.contiguous(), labels.to(torch::kInt64));
}

at::Generator generator(uint64_t seed, uint64_t stream) {
  return at::make_generator<at::CPUGeneratorImpl>(seed * 0x9E3779B97F4A7C15ull + stream);
}

}  // namespace

DatasetPair load_fashion_mnist(const std::string& dir, torch::ScalarType dtype) {
  return {fmnist_split(dir, "train", dtype), fmnist_split(dir, "t10k", dtype)};
}

DatasetPair make_regression(int64_t n, int64_t n_test, uint64_t seed, torch::ScalarType dtype) {
  auto g = generator(seed, 1);
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor a = at::randn({16, 4}, g, opts);
  auto make = [&](int64_t count) -> std::shared_ptr<Dataset> {
    if (count == 0) return nullptr;
    torch::Tensor x = at::randn({count, 16}, g, opts);
    torch::Tensor y = x.matmul(a) + 0.1 * at::randn({count, 4}, g, opts);
    return std::make_shared<TensorDataset>(x.to(dtype), y.to(dtype));
  };
  DatasetPair p;
  p.train = make(n);
  p.test = make(n_test);
  return p;
}

DatasetPair make_bce_toy(int64_t n, int64_t n_test, uint64_t seed, torch::ScalarType dtype) {
  auto g = generator(seed, 2);
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor proj = at::randn({3 * 10 * 10, 5}, g, opts);
  auto make = [&](int64_t count) -> std::shared_ptr<Dataset> {
    if (count == 0) return nullptr;
    torch::Tensor x = at::randn({count, 3, 10, 10}, g, opts);
    torch::Tensor logits = x.flatten(1).matmul(proj) / 10.0;
    torch::Tensor y = (logits + 0.5 * at::randn({count, 5}, g, opts)).gt(0).to(dtype);
    return std::make_shared<TensorDataset>(x.to(dtype), y);
  };
  DatasetPair p;
  p.train = make(n);
  p.test = make(n_test);
  return p;
}

DatasetPair make_sequences(int64_t n, int64_t n_test, uint64_t seed) {
  auto g = generator(seed, 3);
  auto make = [&](int64_t count) -> std::shared_ptr<Dataset> {
    if (count == 0) return nullptr;
    torch::Tensor tokens = at::randint(1, kSeqVocab, {count, kSeqMaxLen}, g, torch::kInt64);
    torch::Tensor lengths = at::randint(1, kSeqMaxLen + 1, {count, 1}, g, torch::kInt64);
    torch::Tensor pos = torch::arange(kSeqMaxLen, torch::kInt64).unsqueeze(0);
    torch::Tensor mask = pos.lt(lengths);
    tokens = tokens * mask;  // padding token 0
    torch::Tensor prev = torch::cat({torch::zeros({count, 1}, torch::kInt64), tokens.narrow(1, 0, kSeqMaxLen - 1)}, 1);
    torch::Tensor target = (tokens + prev).remainder(kSeqVocab) * mask;
    return std::make_shared<TensorDataset>(tokens, target, mask.to(torch::kUInt8));
  };
  DatasetPair p;
  p.train = make(n);
  p.test = make(n_test);
  return p;
}

}  // namespace vdp
