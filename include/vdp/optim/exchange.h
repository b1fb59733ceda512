// How a window's gradients reach the optimizer and its updates reach every rank's parameters
// (include/vdp/README.md, "The window"). Two forms, chosen once when the window is built:
//  - replicated: the flat buffer's one all-reduce (grad/reducer.h, buckets during the last
//    backward); every rank steps every parameter with the whole optimizer state;
//  - sharded (--shard-optimizer, optim/shard.h): a reduce-scatter of the same buffer, each rank steps
//    its 1/W of the parameters with its 1/W of the state, and an all-gather brings the updated
//    parameters to every rank: the same bytes on the wire (a ring all-reduce is a reduce-scatter and
//    an all-gather), the optimizer state divided by W (ZeRO-1).
// The window's loop and tail call the same methods for both and never ask which one they hold.
#pragma once

#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "vdp/ckpt/safetensors.h"
#include "vdp/dist/communicator.h"
#include "vdp/grad/flat_grads.h"

namespace vdp {

class GradExchange {
 public:
  virtual ~GradExchange() = default;
  // The window's reduction: arm() before its last backward, finish() after it (every rank then has
  // the summed gradients it steps and the summed scalar region); disarm() takes back arm() for a
  // redo after an out-of-memory error, when nothing has started (false: something has).
  virtual void arm() = 0;
  virtual bool disarm() = 0;
  virtual void finish() = 0;
  // What this rank's optimizer steps, each with its .grad: the parameters themselves, or this
  // rank's shard of them (one flat tensor per buffer).
  virtual const std::vector<torch::Tensor>& stepped() const = 0;
  // Their gradients (normalization, unscaling, clipping).
  virtual const std::vector<torch::Tensor>& stepped_grads() const = 0;
  // Makes `found_inf` (this rank's inf/NaN flag, [1] float32, changed in place) the same on every
  // rank and returns the per-parameter gradient norms (PyTorch's first stage of a total norm) when
  // `norms`, else an undefined tensor.
  virtual torch::Tensor agree(const torch::Tensor& found_inf, bool norms) = 0;
  // After the optimizer's step: every rank's parameters hold the update (nothing to do when
  // replicated).
  virtual void gather() = 0;
  // The optimizer's state in the one checkpoint format (per parameter, optim/optim.h), whole on
  // rank 0 (other ranks may get nothing). Every rank must call it: it may communicate.
  virtual NamedTensors optimizer_state(torch::optim::Optimizer& opt) = 0;
  // Restores that format into `opt` (every rank holds the whole state read from the checkpoint).
  virtual void load_optimizer_state(torch::optim::Optimizer& opt, const NamedTensors& state,
                                    const std::string& source) = 0;
  // Bytes of the flat buffers one window's reduction covers (gradients and scalars, per rank).
  virtual int64_t reduction_bytes() const = 0;
  // Bytes one rank sends per window in a ring (all-reduce: 2 (W-1)/W of the buffer; reduce-scatter
  // and all-gather: (W-1)/W each), small all-reduces included.
  virtual int64_t wire_bytes() const = 0;
};

// The replicated form over `flat` (grad/reducer.h for buckets and overlap).
std::unique_ptr<GradExchange> make_replicated_exchange(FlatGrads& flat, const std::vector<torch::Tensor>& params,
                                                       std::shared_ptr<Communicator> comm, int64_t bucket_bytes,
                                                       bool overlap);

// Ring traffic of one all-reduce of `bytes` over `world` ranks, per rank.
int64_t ring_all_reduce_bytes(int64_t bytes, int world);

}  // namespace vdp
