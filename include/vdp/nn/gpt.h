// A GPT-style decoder (--model gpt): token embedding wte and learned positions wpe, pre-norm blocks
// h.N (ln_1 → causal self-attention attn.c_attn / attn.c_proj through scaled_dot_product_attention,
// ln_2 → GELU MLP mlp.c_fc / mlp.c_proj), ln_f, and an output head tied to wte. Names as the plain
// PyTorch definition in launch/vdp_models.py (GPT), so weights go both ways. Inputs: tokens [n, T]
// (T ≤ context); output: logits [n, T, vocab]. Padding after a sequence's end cannot change its real
// positions (causal attention); the token loss's mask leaves it out of the count.
#pragma once

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "vdp/nn/models.h"

namespace vdp {

struct GptShape {
  int64_t vocab = 257;     // byte-level tokens and an end-of-text token
  int64_t context = 64;    // most positions
  int64_t layers = 2;
  int64_t heads = 4;
  int64_t width = 64;      // embedding width, a multiple of heads
};

// GPT-2 small: 12 layers, 12 heads, width 768, context 1024, vocabulary 50257.
GptShape gpt2_small_shape();

class Gpt : public Net {
 public:
  explicit Gpt(const GptShape& shape);
  torch::Tensor forward(const Batch& batch) override;
  const GptShape& shape() const { return shape_; }

 private:
  GptShape shape_;
  torch::nn::Embedding wte_{nullptr}, wpe_{nullptr};
  torch::nn::ModuleList h_{nullptr};
  torch::nn::LayerNorm ln_f_{nullptr};
};

}  // namespace vdp
