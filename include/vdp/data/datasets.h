// The built-in datasets. Synthetic ones are generated from the seed, identically on every rank.
#pragma once

#include <memory>
#include <string>

#include "vdp/data/dataset.h"

namespace vdp {

struct DatasetPair {
  std::shared_ptr<Dataset> train;
  std::shared_ptr<Dataset> test;  // may be null
};

// Fashion-MNIST from the four IDX .gz files in `dir`; images normalized to zero mean, unit variance
// (mean 0.2860, std 0.3530 of the training set), shape [n, 1, 28, 28], labels int64 [n].
DatasetPair load_fashion_mnist(const std::string& dir, torch::ScalarType dtype);

// y = x·A + 0.1·noise with x ~ N(0, 1)^16, y in R^4 (MSE).
DatasetPair make_regression(int64_t n, int64_t n_test, uint64_t seed, torch::ScalarType dtype);

// The BCE toy of the background documents: x ~ N(0,1) of shape [3, 10, 10], 5 binary labels that
// depend on the input (so there is something to learn).
DatasetPair make_bce_toy(int64_t n, int64_t n_test, uint64_t seed, torch::ScalarType dtype);

// Variable-length token sequences (vocabulary 16, length 1..24, padded with 0, mask marks real
// tokens). The target at position t is (x_t + x_{t-1}) mod 16: a next-step task whose loss counts
// real tokens, a number not known before the data is read.
constexpr int64_t kSeqVocab = 16;
constexpr int64_t kSeqMaxLen = 24;
DatasetPair make_sequences(int64_t n, int64_t n_test, uint64_t seed);

// NumPy arrays in `dir` (data/npy.h), memory-mapped: x.npy (inputs [n, ...]) and y.npy (targets
// [n, ...]) of any shape and dtype, optional mask.npy (1 where a target counts, same shape as y), and
// optionally test_x.npy / test_y.npy / test_mask.npy for evaluation. Floating-point and bool arrays
// arrive in `dtype`, integer ones as int64 (class ids, tokens), except uint8 inputs (pixels), which
// arrive in `dtype` with their values 0..255.
DatasetPair load_npy_dataset(const std::string& dir, torch::ScalarType dtype);

}  // namespace vdp
