#include "vdp/device/cuda_graph.h"

#ifdef VDP_WITH_CUDA
#include <ATen/core/CachingHostAllocator.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>  // CUDAGraph.h declares CUDAGeneratorState only
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <deque>

#include "vdp/core/error.h"
#include "vdp/device/capture.h"

namespace vdp {
namespace {

std::vector<std::vector<int64_t>> shape_of(const Batch& b) {
  auto one = [](const torch::Tensor& t) { return t.defined() ? t.sizes().vec() : std::vector<int64_t>{-1}; };
  return {one(b.x), one(b.y), one(b.mask)};
}

#ifdef VDP_WITH_CUDA
// Note [a failed capture] (device/capture.h) over PyTorch's CUDAGraph, with a pool of the capture's
// own so that a failed capture's pool can be named and released.
class CudaCaptureSteps final : public CaptureSteps {
 public:
  CudaCaptureSteps(at::cuda::CUDAGraph& graph, c10::DeviceIndex device)
      : graph_(graph), device_(device), pool_(at::cuda::graph_pool_handle()),
        stream_(c10::cuda::getCurrentCUDAStream(device)) {}
  void begin() override {
    // Thread-local: the data producer's thread may pin memory and copy on its own stream meanwhile.
    graph_.capture_begin(pool_, cudaStreamCaptureModeThreadLocal);
  }
  void end() override { graph_.capture_end(); }
  bool capturing() override {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    C10_CUDA_CHECK(cudaStreamIsCapturing(stream_.stream(), &status));
    return status != cudaStreamCaptureStatusNone;
  }
  void abandon() override {
    cudaGraph_t g = nullptr;
    (void)cudaStreamEndCapture(stream_.stream(), &g);
    if (g != nullptr) (void)cudaGraphDestroy(g);
    (void)cudaGetLastError();  // the capture's error is reported by the caller, not left sticky
  }
  void stop_routing() override {
    // Each allocator alone: one that was told already throws "not currently recording".
    try {
      c10::cuda::CUDACachingAllocator::endAllocateToPool(device_, pool_);
    } catch (...) {
    }
    at::getHostAllocator(at::kCUDA)->end_allocate_to_pool(pool_);
  }
  void release_pool() override {
    try {
      c10::cuda::CUDACachingAllocator::releasePool(device_, pool_);
    } catch (...) {
    }
    at::getHostAllocator(at::kCUDA)->release_pool(pool_);
  }
  void discard() override { graph_.reset(); }

 private:
  at::cuda::CUDAGraph& graph_;
  c10::DeviceIndex device_;
  at::cuda::MempoolId_t pool_;
  c10::cuda::CUDAStream stream_;
};

// Records `work` into `graph` on the current stream: the trainer's compute stream (Note [one
// compute stream] in device/compute_stream.h), where the eager warm-up ran and where the gradient
// accumulators were made, so backward never reaches another stream. CUDA refuses to capture the
// legacy default stream: a capture outside the compute-stream scope is vdp's defect.
void capture(at::cuda::CUDAGraph& graph, const torch::Device& device, const std::function<void()>& work,
             const char* what, const char* fix_sync) {
  VDP_ASSERT(c10::cuda::getCurrentCUDAStream(device.index()) != c10::cuda::getDefaultCUDAStream(device.index()),
             "--cuda-graphs: a capture on the legacy default stream (outside the trainer's compute stream)");
  CudaCaptureSteps steps(graph, device.index());
  capture_or_clean_up(steps, work, what, fix_sync,
                      "this is a defect of vdp or of a kernel the model uses: please report it, and train without "
                      "--cuda-graphs meanwhile");
}
#endif

}  // namespace

#ifdef VDP_WITH_CUDA
// The run's end (a graph's destructor): its last replays finish before the graph and the memory
// they use go. Never during training; a destructor does not throw.
void finish_replays(const torch::Device& device, bool any) {
  if (!any) return;
  c10::cuda::CUDAGuard guard(device.index());
  C10_CUDA_CHECK_WARN(cudaDeviceSynchronize());
}

struct MicroStepGraph::Impl {
  torch::Device device{torch::kCUDA};
  std::vector<std::vector<int64_t>> shape;  // of the steady batch (the first of `rows` rows)
  Batch inputs;                             // static: each replay's batch is copied here
  at::cuda::CUDAGraph graph;
  bool captured = false;
  ~Impl() { finish_replays(device, captured); }
};

struct TailGraph::Impl {
  torch::Device device{torch::kCUDA};
  std::unique_ptr<at::cuda::CUDAGraph> graph;  // the capture for key_, if made
  torch::Tensor output;                        // its output, in the capture's memory
  // Captures whose key is gone, kept (with their output's memory) until the event after their last
  // replay has passed: the host never waits for them.
  struct Retired {
    std::unique_ptr<at::cuda::CUDAGraph> graph;
    torch::Tensor output;
    at::cuda::CUDAEvent done;
  };
  std::deque<Retired> retired;
  void drop_finished() {
    while (!retired.empty() && retired.front().done.query()) retired.pop_front();
  }
  ~Impl() { finish_replays(device, graph != nullptr || !retired.empty()); }
};

MicroStepGraph::MicroStepGraph(const torch::Device& device, int64_t rows, int64_t warmup)
    : rows_(rows), warmup_(warmup) {
  // Checked before the graph object exists: it talks to the CUDA driver.
  VDP_CHECK(device.is_cuda(), "--cuda-graphs needs a GPU, but this run is on ", device,
            ": leave it out or train with --device cuda");
  VDP_ASSERT(rows > 0 && warmup >= 1);
  impl_ = std::make_unique<Impl>();
  impl_->device = device;
}

TailGraph::TailGraph(const torch::Device& device, int64_t warmup) : warmup_(warmup) {
  VDP_CHECK(device.is_cuda(), "--cuda-graphs needs a GPU, but this run is on ", device,
            ": leave it out or train with --device cuda");
  VDP_ASSERT(warmup >= 1);
  impl_ = std::make_unique<Impl>();
  impl_->device = device;
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
    capture(g.graph, g.device, [&] { step(g.inputs); }, "the micro-step",
            "a model that synchronizes with the host in forward or backward (.item(), a printed tensor, a shape that "
            "depends on the data) cannot be captured: train without --cuda-graphs");
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
  g.drop_finished();
  if (key != key_) {  // other tensors, or another kernel: the capture (if any) no longer applies
    key_ = key;
    seen_ = 0;
    if (g.graph) {  // its last replay may still run: retired, freed once it is done (no host wait)
      g.retired.push_back({std::move(g.graph), std::move(g.output), at::cuda::CUDAEvent()});
      g.retired.back().done.record(c10::cuda::getCurrentCUDAStream(g.device.index()));
    }
  }
  if (seen_ < warmup_) {
    ++seen_;
    return work();
  }
  if (!g.graph) {  // records the work; the replay below runs it
    g.graph = std::make_unique<at::cuda::CUDAGraph>();
    try {
      capture(*g.graph, g.device, [&] { g.output = work(); }, "the window's tail",
              "this is a defect of vdp: please report it, and train without --cuda-graphs meanwhile");
    } catch (...) {
      g.graph.reset();
      g.output = torch::Tensor();
      throw;
    }
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
