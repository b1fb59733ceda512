// The sharded exchange (--shard-optimizer, ZeRO-1; optim/exchange.h): the optimizer state divided by
// W inside the window's one reduction, with the same traffic and the same results.
//
// Layout. Each flat gradient buffer's gradient region is padded to a multiple of W · kShardAlign
// elements (grad/flat_grads.h) and split into W equal shards; rank r owns shard r of every buffer.
// The parameters get the same layout: they become views into a flat parameter buffer per group
// (their values copied in once), so shard r of the parameters is one contiguous tensor whose .grad
// is shard r of the gradients. The optimizer steps those shards (one tensor per buffer) with ATen's
// fused kernels, elementwise as over the separate parameters, so a parameter may straddle two
// shards and a rank's shard may hold padding only. Shards are balanced by element count (within
// kShardAlign elements) and start on 64-byte boundaries for the vector kernels.
//
// A window. finish(): a reduce-scatter of each buffer's padded region (every rank gets the sums
// of its shard), and one small all-reduce of the scalar region (loss sum, count, stop votes,
// replicated buffers: grad/flat_grads.h). The tail normalizes and unscales its shard and checks it
// for inf/NaN; agree() sums [inf flag, this shard's part of each parameter's squared gradient norm]
// over ranks in one more small all-reduce, so every rank makes the same skip and clipping decision.
// After the optimizer's step (skipped on the device on every rank alike), gather(): an all-gather
// of each parameter buffer. Per rank and window: (W-1)/W of the buffers twice, as the all-reduce.
//
// Checkpoints keep the one format: the full per-parameter state. Saving streams it parameter by
// parameter (each piece broadcast from the rank that owns it, assembled on rank 0, so no rank
// holds more than one parameter's state beyond its shard); loading takes each rank's pieces from
// the per-parameter tensors. So a sharded run resumes unsharded, sharded at another W, and back.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "vdp/optim/exchange.h"

namespace vdp {

// Shards start on multiples of this many elements (64 bytes of float32).
constexpr int64_t kShardAlign = 16;

// The multiple FlatGrads pads each gradient region to for `world` ranks.
inline int64_t shard_multiple(int world) { return kShardAlign * world; }

// `flat` must have been built with shard_multiple(comm->size()). The parameters become views into
// flat parameter buffers (their values kept).
std::unique_ptr<GradExchange> make_sharded_exchange(FlatGrads& flat, const std::vector<torch::Tensor>& params,
                                                    std::shared_ptr<Communicator> comm);

}  // namespace vdp
