#include "vdp/train/task.h"

#include "vdp/data/datasets.h"

namespace vdp {

Task make_task(const Config& cfg) {
  const auto dtype = cfg.dtype == DType::Float64 ? torch::kFloat64 : torch::kFloat32;
  Task t;
  DatasetPair data;
  switch (cfg.dataset) {
    case DatasetKind::FashionMnist:
      data = load_fashion_mnist(cfg.data_dir, dtype);
      t.loss = cross_entropy_sum;
      t.score = argmax_score;
      break;
    case DatasetKind::Regression:
      data = make_regression(cfg.samples, cfg.test_samples, cfg.seed, dtype);
      t.loss = mse_sum;
      break;
    case DatasetKind::BceToy:
      data = make_bce_toy(cfg.samples, cfg.test_samples, cfg.seed, dtype);
      t.loss = bce_sum;
      t.score = multilabel_score;
      break;
    case DatasetKind::Sequence:
      data = make_sequences(cfg.samples, cfg.test_samples, cfg.seed);
      t.loss = token_cross_entropy_sum;
      t.score = token_argmax_score;
      t.items_per_sample = (1.0 + kSeqMaxLen) / 2.0;
      break;
  }
  t.train = data.train;
  t.test = data.test;
  t.model = make_model(cfg);
  return t;
}

}  // namespace vdp
