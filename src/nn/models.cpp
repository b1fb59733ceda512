#include "vdp/nn/models.h"

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/modules/pooling.h>
#include <torch/nn/modules/rnn.h>
#include <torch/utils.h>

#include "vdp/core/error.h"
#include "vdp/data/datasets.h"
#include "vdp/nn/sync_batchnorm.h"

namespace vdp {

namespace nn = torch::nn;

Mlp::Mlp(int64_t in, int64_t hidden, int64_t out) {
  body_ = register_module("body", nn::Sequential(nn::Linear(in, hidden), nn::ReLU(), nn::Linear(hidden, hidden),
                                                 nn::ReLU(), nn::Linear(hidden, out)));
}

torch::Tensor Mlp::forward(const Batch& b) { return body_->forward(b.x.flatten(1)); }

SeedConvnet::SeedConvnet() {
  body_ = register_module(
      "body", nn::Sequential(nn::Conv2d(nn::Conv2dOptions(3, 10, 3).stride(1).padding(1)),
                             nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2)), nn::ReLU(), nn::Flatten(),
                             nn::Linear(10 * 5 * 5, 5), nn::Sigmoid()));
}

torch::Tensor SeedConvnet::forward(const Batch& b) { return body_->forward(b.x); }

namespace {
void add_norm(nn::Sequential& s, NormKind norm, int64_t channels) {
  switch (norm) {
    case NormKind::None: break;
    case NormKind::Batch: s->push_back(nn::BatchNorm2d(channels)); break;
    case NormKind::SyncBatch: s->push_back(SyncBatchNorm(nn::BatchNormOptions(channels), 2)); break;
    case NormKind::Group: s->push_back(nn::GroupNorm(nn::GroupNormOptions(8, channels))); break;
  }
}
}  // namespace

FmnistCnn::FmnistCnn(NormKind norm) {
  nn::Sequential s;
  s->push_back(nn::Conv2d(nn::Conv2dOptions(1, 32, 3).padding(1).bias(norm == NormKind::None)));
  add_norm(s, norm, 32);
  s->push_back(nn::ReLU());
  s->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2)));
  s->push_back(nn::Conv2d(nn::Conv2dOptions(32, 64, 3).padding(1).bias(norm == NormKind::None)));
  add_norm(s, norm, 64);
  s->push_back(nn::ReLU());
  s->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2)));
  s->push_back(nn::Flatten());
  s->push_back(nn::Linear(64 * 7 * 7, 128));
  s->push_back(nn::ReLU());
  s->push_back(nn::Linear(128, 10));
  body_ = register_module("body", s);
}

torch::Tensor FmnistCnn::forward(const Batch& b) { return body_->forward(b.x); }

SeqGru::SeqGru(int64_t vocab, int64_t hidden) {
  embed_ = register_module("embed", nn::Embedding(vocab, hidden));
  gru_ = register_module("gru", nn::GRU(nn::GRUOptions(hidden, hidden).batch_first(true)));
  head_ = register_module("head", nn::Linear(hidden, vocab));
}

torch::Tensor SeqGru::forward(const Batch& b) {
  auto out = std::get<0>(gru_->forward(embed_->forward(b.x)));
  return head_->forward(out);
}

std::shared_ptr<Net> make_model(const Config& cfg) {
  // Parameters are drawn from torch's default CPU generator: seed it so that every rank builds the
  // same initial model (rank 0's weights are broadcast anyway; this keeps W=1 runs reproducible).
  torch::manual_seed(cfg.seed);
  std::shared_ptr<Net> net;
  switch (cfg.model) {
    case ModelKind::Mlp: {
      const bool fmnist = cfg.dataset == DatasetKind::FashionMnist;
      net = std::make_shared<Mlp>(fmnist ? 28 * 28 : 16, cfg.hidden, fmnist ? 10 : 4);
      break;
    }
    case ModelKind::SeedConvnet: net = std::make_shared<SeedConvnet>(); break;
    case ModelKind::FmnistCnn: net = std::make_shared<FmnistCnn>(cfg.norm); break;
    case ModelKind::SeqGru: net = std::make_shared<SeqGru>(kSeqVocab, cfg.hidden); break;
  }
  VDP_ASSERT(net != nullptr);
  net->to(cfg.dtype == DType::Float64 ? torch::kFloat64 : torch::kFloat32);
  return net;
}

}  // namespace vdp
