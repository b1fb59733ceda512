#include "vdp/nn/gpt.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <cmath>

#include "vdp/core/error.h"

namespace vdp {
namespace nn = torch::nn;
namespace {

class AttentionImpl : public nn::Module {
 public:
  AttentionImpl(int64_t width, int64_t heads) : heads_(heads) {
    c_attn = register_module("c_attn", nn::Linear(width, 3 * width));
    c_proj = register_module("c_proj", nn::Linear(width, width));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const int64_t n = x.size(0), t = x.size(1), c = x.size(2);
    auto qkv = c_attn->forward(x).split(c, 2);
    auto heads = [&](const torch::Tensor& a) { return a.view({n, t, heads_, c / heads_}).transpose(1, 2); };
    auto y = at::scaled_dot_product_attention(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]), {}, 0.0,
                                              /*is_causal=*/true);
    return c_proj->forward(y.transpose(1, 2).contiguous().view({n, t, c}));
  }
  nn::Linear c_attn{nullptr}, c_proj{nullptr};

 private:
  int64_t heads_;
};
TORCH_MODULE(Attention);

class MlpBlockImpl : public nn::Module {
 public:
  explicit MlpBlockImpl(int64_t width) {
    c_fc = register_module("c_fc", nn::Linear(width, 4 * width));
    c_proj = register_module("c_proj", nn::Linear(4 * width, width));
  }
  torch::Tensor forward(const torch::Tensor& x) { return c_proj->forward(at::gelu(c_fc->forward(x))); }
  nn::Linear c_fc{nullptr}, c_proj{nullptr};
};
TORCH_MODULE(MlpBlock);

class BlockImpl : public nn::Module {
 public:
  BlockImpl(int64_t width, int64_t heads) {
    ln_1 = register_module("ln_1", nn::LayerNorm(nn::LayerNormOptions({width})));
    attn = register_module("attn", Attention(width, heads));
    ln_2 = register_module("ln_2", nn::LayerNorm(nn::LayerNormOptions({width})));
    mlp = register_module("mlp", MlpBlock(width));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = x + attn->forward(ln_1->forward(x));
    return x + mlp->forward(ln_2->forward(x));
  }
  nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  Attention attn{nullptr};
  MlpBlock mlp{nullptr};
};
TORCH_MODULE(Block);

}  // namespace

GptShape gpt2_small_shape() { return {50257, 1024, 12, 12, 768}; }

Gpt::Gpt(const GptShape& s) : shape_(s) {
  VDP_CHECK(s.width % s.heads == 0, "invalid GPT shape: --width ", s.width, " is not a multiple of --heads ", s.heads);
  wte_ = register_module("wte", nn::Embedding(s.vocab, s.width));
  wpe_ = register_module("wpe", nn::Embedding(s.context, s.width));
  h_ = register_module("h", nn::ModuleList());
  for (int64_t i = 0; i < s.layers; ++i) h_->push_back(Block(s.width, s.heads));
  ln_f_ = register_module("ln_f", nn::LayerNorm(nn::LayerNormOptions({s.width})));
  // GPT-2's initialisation: N(0, 0.02) weights, zero biases, residual projections scaled by
  // 1/sqrt(2 · layers).
  torch::NoGradGuard no_grad;
  for (auto& p : named_parameters()) {
    const std::string& name = p.key();
    if (name.find("ln_") != std::string::npos) continue;  // LayerNorm: ones and zeros
    if (name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0) {
      p.value().zero_();
    } else {
      const bool residual = name.find("c_proj.weight") != std::string::npos;
      p.value().normal_(0.0, residual ? 0.02 / std::sqrt(2.0 * static_cast<double>(s.layers)) : 0.02);
    }
  }
}

torch::Tensor Gpt::forward(const Batch& b) {
  const int64_t t = b.x.size(1);
  VDP_CHECK(t <= shape_.context, "a sequence of ", t, " tokens is longer than the GPT's context of ", shape_.context);
  auto pos = torch::arange(t, b.x.options().dtype(torch::kInt64));
  auto x = wte_->forward(b.x) + wpe_->forward(pos);
  for (auto& block : *h_) {
    auto* b = block->as<BlockImpl>();
    x = run_block(*b, [b](const torch::Tensor& in) { return b->forward(in); }, x);
  }
  return at::linear(ln_f_->forward(x), wte_->weight);  // the head tied to wte
}

}  // namespace vdp
