#include "vdp/nn/models.h"

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/modules/rnn.h>
#include <torch/utils.h>

#include "vdp/core/error.h"
#include "vdp/data/datasets.h"
#include "vdp/nn/gpt.h"
#include "vdp/nn/recompute.h"
#include "vdp/nn/script_net.h"
#include "vdp/nn/sync_batchnorm.h"

namespace vdp {

namespace nn = torch::nn;

torch::Tensor Net::run_block(torch::nn::Module& owner, const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                            const torch::Tensor& x) {
  return recompute_ ? checkpoint(owner, fn, x) : fn(x);
}

Mlp::Mlp(int64_t in, int64_t hidden, int64_t out) {
  fc1_ = register_module("fc1", nn::Linear(in, hidden));
  fc2_ = register_module("fc2", nn::Linear(hidden, hidden));
  fc3_ = register_module("fc3", nn::Linear(hidden, out));
}

torch::Tensor Mlp::forward(const Batch& b) {
  auto x = run_block(*fc1_, [this](const torch::Tensor& in) { return torch::relu(fc1_->forward(in)); }, b.x.flatten(1));
  x = run_block(*fc2_, [this](const torch::Tensor& in) { return torch::relu(fc2_->forward(in)); }, x);
  return run_block(*fc3_, [this](const torch::Tensor& in) { return fc3_->forward(in); }, x);
}

SeedConvnet::SeedConvnet() {
  conv_layer_ = register_module("conv_layer", nn::Conv2d(nn::Conv2dOptions(3, 10, 3).stride(1).padding(1)));
  fc_layer_ = register_module("fc_layer", nn::Linear(10 * 5 * 5, 5));
}

torch::Tensor SeedConvnet::forward(const Batch& b) {
  auto x = torch::relu(torch::max_pool2d(conv_layer_->forward(b.x), 2, 2));
  return torch::sigmoid(fc_layer_->forward(x.flatten(1)));
}

namespace {
// The norm layer `name` of `owner` (registered there under its PyTorch name), or an empty AnyModule
// for --norm none. Models hold it as an AnyModule and call it directly: no lookup per forward.
nn::AnyModule add_norm(nn::Module& owner, const char* name, NormKind norm, int64_t channels) {
  nn::AnyModule n;
  switch (norm) {
    case NormKind::None: return n;
    case NormKind::Batch: n = nn::AnyModule(nn::BatchNorm2d(channels)); break;
    case NormKind::SyncBatch: n = nn::AnyModule(SyncBatchNorm(nn::BatchNormOptions(channels), 2)); break;
    case NormKind::Group: n = nn::AnyModule(nn::GroupNorm(nn::GroupNormOptions(8, channels))); break;
  }
  if (name != nullptr) owner.register_module(name, n.ptr());
  return n;
}

torch::Tensor apply_norm(nn::AnyModule& norm, const torch::Tensor& x) { return norm.is_empty() ? x : norm.forward(x); }
}  // namespace

FmnistCnn::FmnistCnn(NormKind norm) {
  const bool bias = norm == NormKind::None;
  conv1_ = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(1, 32, 3).padding(1).bias(bias)));
  norm1_ = add_norm(*this, "norm1", norm, 32);
  conv2_ = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(32, 64, 3).padding(1).bias(bias)));
  norm2_ = add_norm(*this, "norm2", norm, 64);
  fc1_ = register_module("fc1", nn::Linear(64 * 7 * 7, 128));
  fc2_ = register_module("fc2", nn::Linear(128, 10));
}

torch::Tensor FmnistCnn::forward(const Batch& b) {
  auto block = [](const torch::Tensor& x, nn::AnyModule& norm) {
    return torch::max_pool2d(torch::relu(apply_norm(norm, x)), 2);
  };
  auto x = block(conv1_->forward(b.x), norm1_);
  x = block(conv2_->forward(x), norm2_);
  x = torch::relu(fc1_->forward(x.flatten(1)));
  return fc2_->forward(x);
}

namespace {

// torchvision's BasicBlock: conv1 → bn1 → relu → conv2 → bn2, plus the shortcut (downsample: 1x1
// conv → norm where the shape changes), then relu.
class BasicBlockImpl : public nn::Module {
 public:
  BasicBlockImpl(int64_t in, int64_t out, int64_t stride, NormKind norm) {
    conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)));
    bn1 = add_norm(*this, "bn1", norm, out);
    conv2 = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(out, out, 3).stride(1).padding(1).bias(false)));
    bn2 = add_norm(*this, "bn2", norm, out);
    if (stride != 1 || in != out) {
      nn::Sequential d;
      d->push_back(nn::Conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false)));
      if (auto n = add_norm(*this, nullptr, norm, out); !n.is_empty()) d->push_back(n);  // downsample.1
      downsample = register_module("downsample", d);
    }
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto out = torch::relu(apply_norm(bn1, conv1->forward(x)));
    out = apply_norm(bn2, conv2->forward(out));
    return torch::relu(out + (downsample ? downsample->forward(x) : x));
  }
  nn::Conv2d conv1{nullptr}, conv2{nullptr};
  nn::AnyModule bn1, bn2;  // empty with --norm none
  nn::Sequential downsample{nullptr};
};
TORCH_MODULE(BasicBlock);

}  // namespace

ResNet18::ResNet18(int64_t in_channels, int64_t classes, NormKind norm, bool channels_last)
    : channels_last_(channels_last) {
  conv1_ = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(in_channels, 64, 3).stride(1).padding(1).bias(false)));
  bn1_ = add_norm(*this, "bn1", norm, 64);
  const int64_t widths[4] = {64, 128, 256, 512};
  int64_t in = 64;
  for (int i = 0; i < 4; ++i) {
    const int64_t stride = i == 0 ? 1 : 2;
    layers_[i] = register_module("layer" + std::to_string(i + 1),
                                 nn::Sequential(BasicBlock(in, widths[i], stride, norm), BasicBlock(widths[i], widths[i], 1, norm)));
    in = widths[i];
  }
  fc_ = register_module("fc", nn::Linear(512, classes));
  if (channels_last_) {
    torch::NoGradGuard no_grad;
    for (auto& p : parameters())
      if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
}

torch::Tensor ResNet18::forward(const Batch& b) {
  auto x = channels_last_ ? b.x.contiguous(at::MemoryFormat::ChannelsLast) : b.x;
  x = torch::relu(apply_norm(bn1_, conv1_->forward(x)));
  for (auto& layer : layers_)
    x = run_block(*layer, [&layer](const torch::Tensor& in) { return layer->forward(in); }, x);
  x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
  return fc_->forward(x);
}

SeqGru::SeqGru(int64_t vocab, int64_t hidden) {
  embed_ = register_module("embed", nn::Embedding(vocab, hidden));
  gru_ = register_module("gru", nn::GRU(nn::GRUOptions(hidden, hidden).batch_first(true)));
  head_ = register_module("head", nn::Linear(hidden, vocab));
}

torch::Tensor SeqGru::forward(const Batch& b) {
  auto out = std::get<0>(gru_->forward(embed_->forward(b.x)));
  return head_->forward(out);
}

void set_float_dtype(torch::nn::Module& module, torch::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters())
    if (p.is_floating_point()) p.set_data(p.to(dtype));
  for (auto& b : module.buffers())
    if (b.is_floating_point()) b.set_data(b.to(dtype));
}

std::shared_ptr<Net> make_model(const Config& cfg, const ModelIO& io) {
  // Parameters are drawn from torch's default CPU generator: seed it so that every rank builds the
  // same initial model (rank 0's weights are broadcast anyway; this keeps W=1 runs reproducible).
  torch::manual_seed(cfg.seed);
  std::shared_ptr<Net> net;
  switch (cfg.model) {
    case ModelKind::Mlp: {
      const bool fmnist = cfg.dataset == DatasetKind::FashionMnist;
      const int64_t in = io.inputs > 0 ? io.inputs : fmnist ? 28 * 28 : 16;
      const int64_t out = io.outputs > 0 ? io.outputs : fmnist ? 10 : 4;
      net = std::make_shared<Mlp>(in, cfg.hidden, out);
      break;
    }
    case ModelKind::SeedConvnet: net = std::make_shared<SeedConvnet>(); break;
    case ModelKind::FmnistCnn: net = std::make_shared<FmnistCnn>(cfg.norm); break;
    case ModelKind::SeqGru: net = std::make_shared<SeqGru>(kSeqVocab, cfg.hidden); break;
    case ModelKind::Torchscript: net = std::make_shared<ScriptNet>(cfg.model_file); break;
    case ModelKind::Gpt: {
      GptShape shape{io.outputs > 0 ? io.outputs : 257, cfg.context, cfg.layers, cfg.heads, cfg.hidden};
      net = std::make_shared<Gpt>(shape);
      break;
    }
    case ModelKind::Gpt2Small: net = std::make_shared<Gpt>(gpt2_small_shape()); break;
    case ModelKind::Resnet18:
      net = std::make_shared<ResNet18>(io.in_channels > 0 ? io.in_channels : 1, io.outputs > 0 ? io.outputs : 10,
                                       cfg.norm, cfg.channels_last);
      break;
  }
  VDP_ASSERT(net != nullptr);
  net->set_recompute(cfg.recompute);
  // Floating-point parameters and buffers only, as PyTorch's Module.to(dtype) does
  // (LibTorch's would also turn BatchNorm's int64 num_batches_tracked into a float).
  set_float_dtype(*net, cfg.dtype == DType::Float64 ? torch::kFloat64 : torch::kFloat32);
  return net;
}

}  // namespace vdp
