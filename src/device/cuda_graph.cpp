#include "vdp/device/cuda_graph.h"

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

#ifdef VDP_WITH_CUDA
// Records `work` into `graph` on a side stream that first waits for everything before it on the
// compute stream (CUDA refuses capture on the legacy default stream, and PyTorch's warm-up rule
// wants the capture off the compute stream), then makes the compute stream wait for the side one.
// A failure ends the capture and is reported as `what` + CUDA's first line + `fix`.
void capture_on_side_stream(at::cuda::CUDAGraph& graph, const torch::Device& device, const std::function<void()>& work,
                            const char* what, const char* fix) {
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
      work();
    } catch (const std::exception& e) {
      try {
        graph.capture_end();
      } catch (...) {
      }
      std::string why = e.what();
      why = why.substr(0, why.find('\n'));
      // vdp's own failure, not the user's input: exit 1 with CUDA's reason.
      throw InternalError(detail::format("--cuda-graphs: ", what, " could not be captured: ", why, "; ", fix));
    }
    graph.capture_end();
  }
  at::cuda::CUDAEvent after;
  after.record(side);
  after.block(compute);
}
#endif

}  // namespace

#ifdef VDP_WITH_CUDA
struct MicroStepGraph::Impl {
  torch::Device device;
  std::vector<std::vector<int64_t>> shape;  // of the steady batch (the first of `rows` rows)
  Batch inputs;                             // static: each replay's batch is copied here
  at::cuda::CUDAGraph graph;
  bool captured = false;
};

struct TailGraph::Impl {
  torch::Device device;
  std::unique_ptr<at::cuda::CUDAGraph> graph;  // the capture for key_, if made
  torch::Tensor output;                        // its output, in the capture's memory
};

MicroStepGraph::MicroStepGraph(const torch::Device& device, int64_t rows, int64_t warmup)
    : rows_(rows), warmup_(warmup) {
  // Checked before the graph object exists: it talks to the CUDA driver.
  VDP_CHECK(device.is_cuda(), "--cuda-graphs needs a GPU, but this run is on ", device,
            ": leave it out or train with --device cuda");
  VDP_ASSERT(rows > 0 && warmup >= 1);
  impl_ = std::make_unique<Impl>(Impl{device, {}, {}, {}, false});
}

TailGraph::TailGraph(const torch::Device& device, int64_t warmup) : warmup_(warmup) {
  VDP_CHECK(device.is_cuda(), "--cuda-graphs needs a GPU, but this run is on ", device,
            ": leave it out or train with --device cuda");
  VDP_ASSERT(warmup >= 1);
  impl_ = std::make_unique<Impl>(Impl{device, nullptr, {}});
}
#else
struct MicroStepGraph::Impl {};
struct TailGraph::Impl {};

MicroStepGraph::MicroStepGraph(const torch::Device& device, int64_t rows, int64_t warmup)
    : rows_(rows), warmup_(warmup) {
  VDP_FAIL("--cuda-graphs needs a GPU and a CUDA build of vdp; this one was built without CUDA (run on ", device,
           "): leave it out");
}

TailGraph::TailGraph(const torch::Device& device, int64_t warmup) : warmup_(warmup) {
  VDP_FAIL("--cuda-graphs needs a GPU and a CUDA build of vdp; this one was built without CUDA (run on ", device,
           "): leave it out");
}
#endif

MicroStepGraph::~MicroStepGraph() = default;
TailGraph::~TailGraph() = default;

bool MicroStepGraph::run(const Batch& batch, const Step& step) {
#ifdef VDP_WITH_CUDA
  Impl& g = *impl_;
  if (batch.size() == rows_ && g.shape.empty()) g.shape = shape_of(batch);
  if (batch.size() != rows_ || shape_of(batch) != g.shape || seen_ < warmup_) {
    if (batch.size() == rows_ && shape_of(batch) == g.shape) ++seen_;
    step(batch);
    return false;
  }
  if (!g.captured) {  // records the work; the replay below runs it
    auto clone = [](const torch::Tensor& t) { return t.defined() ? t.clone() : t; };
    g.inputs = {clone(batch.x), clone(batch.y), clone(batch.mask)};
    capture_on_side_stream(
        g.graph, g.device, [&] { step(g.inputs); }, "the micro-step",
        "a model that synchronizes with the host in forward or backward cannot be captured: train without "
        "--cuda-graphs");
    g.captured = true;
  }
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

torch::Tensor TailGraph::run(const std::vector<const void*>& key, const Work& work) {
#ifdef VDP_WITH_CUDA
  Impl& g = *impl_;
  if (key != key_) {  // other tensors, or another kernel: the capture (if any) no longer applies
    key_ = key;
    seen_ = 0;
    if (g.graph) {  // its last replay may still run: let it finish before its memory is released
      c10::cuda::getCurrentCUDAStream(g.device.index()).synchronize();
      g.output = torch::Tensor();
      g.graph.reset();
    }
  }
  if (seen_ < warmup_) {
    ++seen_;
    return work();
  }
  if (!g.graph) {  // records the work; the replay below runs it
    g.graph = std::make_unique<at::cuda::CUDAGraph>();
    capture_on_side_stream(
        *g.graph, g.device, [&] { g.output = work(); }, "the window's tail",
        "this is a defect of vdp: please report it, and train without --cuda-graphs meanwhile");
  }
  g.graph->replay();
  ++replays_;
  return g.output;
#else
  (void)key, (void)work;
  VDP_ASSERT(false, "CUDA graphs in a build without CUDA");
  return {};
#endif
}

}  // namespace vdp
