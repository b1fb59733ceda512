#include "vdp/train/cuda_graph.h"

#ifdef VDP_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>  // CUDAGraph.h declares CUDAGeneratorState only
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "vdp/core/error.h"

namespace vdp {
namespace {

std::vector<std::vector<int64_t>> shape_of(const Batch& b) {
  auto one = [](const torch::Tensor& t) { return t.defined() ? t.sizes().vec() : std::vector<int64_t>{-1}; };
  return {one(b.x), one(b.y), one(b.mask)};
}

}  // namespace

#ifdef VDP_WITH_CUDA
struct MicroStepGraph::Impl {
  torch::Device device;
  std::vector<std::vector<int64_t>> shape;  // of the steady batch (the first of `rows` rows)
  Batch inputs;                             // static: each replay's batch is copied here
  at::cuda::CUDAGraph graph;
  bool captured = false;

  void capture(const Batch& batch, const Step& step) {
    auto clone = [](const torch::Tensor& t) { return t.defined() ? t.clone() : t; };
    inputs = {clone(batch.x), clone(batch.y), clone(batch.mask)};
    // On a side stream that first waits for everything before it (CUDA refuses capture on the
    // legacy default stream, and PyTorch's warm-up rule wants the capture off the compute stream).
    const c10::cuda::CUDAStream compute = c10::cuda::getCurrentCUDAStream(device.index());
    const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, device.index());
    at::cuda::CUDAEvent before;
    before.record(compute);
    before.block(side);
    {
      c10::cuda::CUDAStreamGuard guard(side);
      // Thread-local: the data producer's thread may pin memory and copy on its own stream meanwhile.
      graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
      try {
        step(inputs);
      } catch (const std::exception& e) {
        try {
          graph.capture_end();
        } catch (...) {
        }
        std::string why = e.what();
        why = why.substr(0, why.find('\n'));
        VDP_FAIL("--cuda-graphs: the micro-step cannot be captured (", why,
                 "); the model synchronizes with the host in forward or backward. Train without --cuda-graphs");
      }
      graph.capture_end();
    }
    at::cuda::CUDAEvent after;
    after.record(side);
    after.block(compute);
    captured = true;
  }
};

MicroStepGraph::MicroStepGraph(const torch::Device& device, int64_t rows, int64_t warmup)
    : rows_(rows), warmup_(warmup) {
  // Checked before the graph object exists: it talks to the CUDA driver.
  VDP_CHECK(device.is_cuda(), "--cuda-graphs needs a GPU, but this run is on ", device,
            ": leave it out or train with --device cuda");
  VDP_ASSERT(rows > 0 && warmup >= 1);
  impl_ = std::make_unique<Impl>(Impl{device, {}, {}, {}, false});
}
#else
struct MicroStepGraph::Impl {};

MicroStepGraph::MicroStepGraph(const torch::Device& device, int64_t rows, int64_t warmup)
    : rows_(rows), warmup_(warmup) {
  VDP_FAIL("--cuda-graphs needs a GPU and a CUDA build of vdp; this one was built without CUDA (run on ", device,
           "): leave it out");
}
#endif

MicroStepGraph::~MicroStepGraph() = default;

bool MicroStepGraph::run(const Batch& batch, const Step& step) {
#ifdef VDP_WITH_CUDA
  Impl& g = *impl_;
  if (batch.size() == rows_ && g.shape.empty()) g.shape = shape_of(batch);
  if (batch.size() != rows_ || shape_of(batch) != g.shape || seen_ < warmup_) {
    if (batch.size() == rows_ && shape_of(batch) == g.shape) ++seen_;
    step(batch);
    return false;
  }
  if (!g.captured) g.capture(batch, step);  // records the work; the replay below runs it
  auto put = [](torch::Tensor& dst, const torch::Tensor& src) {
    if (dst.defined()) dst.copy_(src, /*non_blocking=*/true);
  };
  put(g.inputs.x, batch.x);
  put(g.inputs.y, batch.y);
  put(g.inputs.mask, batch.mask);
  g.graph.replay();
  ++replays_;
  return true;
#else
  (void)batch, (void)step;
  VDP_ASSERT(false, "CUDA graphs in a build without CUDA");
  return false;
#endif
}

}  // namespace vdp
