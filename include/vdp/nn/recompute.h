// Activation recomputation (--recompute; launch/README.md, "Fitting the memory"): a block runs
// without keeping its activations, and backward runs it again, under the random generators' state
// and the autocast state it first ran with, before differentiating it. Gradients are the same bits
// as without it (the same kernels on the same inputs); memory holds the block's inputs instead of
// everything inside it, at the cost of one more forward of the block.
//
// For a library user's own module:
//
//   x = vdp::checkpoint(*block, [&](const torch::Tensor& in) { return block->forward(in); }, x);
//
// The block must be a function of its inputs, its parameters and the random generators: no state
// that its second run would change again (BatchNorm's running statistics are, so vdp-train refuses
// --recompute with --norm batch|syncbatch), no collectives (SyncBatchNorm), and no CUDA-graph capture
// around it. Outside grad mode (evaluation) the block simply runs.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <functional>
#include <vector>

namespace vdp {

using BlockFn = std::function<std::vector<torch::Tensor>(const std::vector<torch::Tensor>&)>;

// Runs fn(inputs) keeping only `inputs`; gradients reach the inputs that require them and `params`
// (the parameters fn uses: they become inputs of the recomputation's autograd node, so they get
// their gradients even when no input requires one).
std::vector<torch::Tensor> checkpoint(BlockFn fn, const std::vector<torch::Tensor>& inputs,
                                      const std::vector<torch::Tensor>& params);

// One tensor in, one out, with the parameters of `module`.
torch::Tensor checkpoint(torch::nn::Module& module, const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                         const torch::Tensor& x);

}  // namespace vdp
