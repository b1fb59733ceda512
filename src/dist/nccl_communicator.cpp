#include "vdp/dist/nccl_communicator.h"

#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

#include "vdp/core/error.h"
#include "vdp/core/thread_device.h"
#include "vdp/dist/last_words.h"
#include "vdp/dist/mpi_env.h"

namespace vdp {
namespace {

void nccl_check(ncclResult_t r, const char* call, const char* file, int line) {
  if (r == ncclSuccess) return;
  const MpiEnv& env = MpiEnv::get();
  throw InternalError(detail::format("NCCL call failed on rank ", env.rank(), " (", env.host(), ") at ", file, ":",
                                     line, ": ", call, ": ", ncclGetErrorString(r)));
}
#define NCCL_CHECK(call) nccl_check((call), #call, __FILE__, __LINE__)

ncclDataType_t nccl_type(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return ncclFloat32;
    case torch::kFloat64: return ncclFloat64;
    case torch::kFloat16: return ncclFloat16;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kInt64: return ncclInt64;
    case torch::kInt32: return ncclInt32;
    case torch::kInt8: return ncclInt8;
    case torch::kUInt8: return ncclUint8;
    default: break;
  }
  VDP_ASSERT(false, "NCCL has no datatype for ", t);
  return ncclFloat32;
}

}  // namespace

// Note [NCCL watchdog]: NCCL collectives are waited for by the GPU, not the host, so a host-side
// deadline per wait cannot see a peer that never arrives (the host blocks later, in a stream sync).
// As in PyTorch's ProcessGroupNCCL, a watchdog thread polls the collectives in flight: each has a
// deadline, and ncclCommGetAsyncError reports a failed peer or network. On either, the watchdog
// aborts the communicator (ncclCommAbort, which also unblocks the kernels), prints one line naming
// the collective, its sequence number and the phase, and ends the whole job (MPI_Abort, exit 4).
struct NcclCommunicator::Impl {
  int device = 0;
  int rank = 0, size = 1;
  ncclComm_t comm = nullptr;
  c10::cuda::CUDAStream stream = c10::cuda::getDefaultCUDAStream();
  const Communicator* owner = nullptr;
  std::atomic<bool> aborted{false};

  struct InFlight {
    std::shared_ptr<at::cuda::CUDAEvent> done;
    std::chrono::steady_clock::time_point deadline;
    int64_t seq;
    const char* what;
    int64_t bytes;
    std::string phase;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::deque<InFlight> in_flight;
  bool stopping = false;
  int64_t seq = 0;
  std::thread watchdog;

  void track(std::shared_ptr<at::cuda::CUDAEvent> done, const char* what, int64_t bytes) {
    std::lock_guard<std::mutex> lock(mu);
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(owner->timeout() * 1000));
    in_flight.push_back({std::move(done), deadline, ++seq, what, bytes, owner->phase()});
    cv.notify_one();
  }

  // The message first, then the abort under a deadline, then the job's end (dist/last_words.h):
  // ncclCommAbort can block on a wedged device, and the job must end with its reason all the same.
  [[noreturn]] void fail(const std::string& msg) {
    const MpiEnv& env = MpiEnv::get();
    report_then_abort(
        detail::format(MpiEnv::program(), ": timeout [rank ", rank, " of ", size, " on ", env.host(), "]: ", msg),
        [this] {
          if (!aborted.exchange(true)) ncclCommAbort(comm);
        },
        kAbortDeadline, [&env] { env.abort(kExitTimeout); });
  }

  void watch() {
    std::unique_lock<std::mutex> lock(mu);
    while (!stopping) {
      cv.wait_for(lock, std::chrono::milliseconds(100));
      if (stopping || aborted) break;
      while (!in_flight.empty() && in_flight.front().done->query()) in_flight.pop_front();
      ncclResult_t async = ncclSuccess;
      if (ncclCommGetAsyncError(comm, &async) == ncclSuccess && async != ncclSuccess && async != ncclInProgress)
        fail(detail::format("NCCL reported '", ncclGetErrorString(async), "' during ",
                            in_flight.empty() ? std::string("communication") : in_flight.front().phase,
                            " (a peer failed or the network broke)"));
      if (!in_flight.empty() && std::chrono::steady_clock::now() > in_flight.front().deadline) {
        const InFlight& f = in_flight.front();
        fail(detail::format("timed out after ", owner->timeout(), " s (--timeout) in NCCL ", f.what, " #", f.seq,
                            " (", f.bytes, " bytes) during ", f.phase,
                            ": a rank did not arrive (stopped, dead or slower than the timeout; raise --timeout "
                            "if a step legitimately takes longer)"));
      }
    }
  }

  // Runs `work` on the communication stream after the caller's stream reached this point, and
  // returns the event that marks its end (the caller's stream does not wait for it here).
  template <typename F>
  std::shared_ptr<at::cuda::CUDAEvent> on_comm_stream(const torch::Tensor& t, F&& work) {
    c10::cuda::CUDAGuard guard(device);
    auto caller = c10::cuda::getCurrentCUDAStream(device);
    at::cuda::CUDAEvent ready;
    ready.record(caller);
    ready.block(stream);
    work(stream.stream());
    auto done = std::make_shared<at::cuda::CUDAEvent>();
    done->record(stream);
    // The caching allocator must not hand `t`'s memory to another stream's work before the
    // collective finished reading and writing it.
    c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), stream);
    return done;
  }
};

namespace {
struct NcclWork : Work {
  std::shared_ptr<at::cuda::CUDAEvent> done;
  int device = 0;
  void wait() override { done->block(c10::cuda::getCurrentCUDAStream(device)); }
};

// Waits for an MPI request against `timeout` seconds (the id broadcast at start-up).
void wait_mpi(MPI_Request& r, double timeout, int rank) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int done = 0;;) {
    VDP_MPI_CHECK(MPI_Test(&r, &done, MPI_STATUS_IGNORE));
    if (done) return;
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout)
      throw TimeoutError(detail::format("rank ", rank, " timed out after ", timeout,
                                        " s waiting for the NCCL id (start-up): a rank did not arrive"));
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}
}  // namespace

NcclCommunicator::NcclCommunicator(MPI_Comm world, int rank, int size, int cuda_device, double timeout_s)
    : impl_(std::make_unique<Impl>()), rank_(rank), size_(size) {
  timeout_s_ = timeout_s;
  impl_->device = cuda_device;
  impl_->rank = rank;
  impl_->size = size;
  impl_->owner = this;
  c10::cuda::CUDAGuard guard(cuda_device);
  ncclUniqueId id;
  if (rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  if (size > 1) {
    VDP_ASSERT(world != MPI_COMM_NULL, "NCCL at world size > 1 needs MPI to share its id");
    MPI_Request r = MPI_REQUEST_NULL;
    VDP_MPI_CHECK(MPI_Ibcast(&id, sizeof id, MPI_BYTE, 0, world, &r));
    wait_mpi(r, timeout_s_, rank);
  }
  NCCL_CHECK(ncclCommInitRank(&impl_->comm, size, id, rank));
  impl_->stream = c10::cuda::getStreamFromPool(/*isHighPriority=*/true, cuda_device);
  impl_->watchdog = std::thread([this] {
    // The watchdog's event queries run on this rank's GPU, not on device 0 (core/thread_device.h).
    try {
      bind_device(torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(impl_->device)));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: warning: the NCCL watchdog could not select GPU %d: %s\n", MpiEnv::program(),
                   impl_->device, e.what());
    }
    impl_->watch();
  });
}

NcclCommunicator::~NcclCommunicator() {
  if (!impl_) return;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
    impl_->cv.notify_one();
  }
  if (impl_->watchdog.joinable()) impl_->watchdog.join();
  if (!impl_->comm || impl_->aborted) return;
  // On a failure path nothing may wait for peers (Note [bounded collectives]): abort, not destroy.
  if (std::uncaught_exceptions() > 0) ncclCommAbort(impl_->comm);
  else ncclCommDestroy(impl_->comm);
}

void NcclCommunicator::abort() {
  if (impl_ && impl_->comm && !impl_->aborted.exchange(true)) ncclCommAbort(impl_->comm);
}

torch::Device NcclCommunicator::device() const { return torch::Device(torch::kCUDA, impl_->device); }

void NcclCommunicator::all_reduce_sum(const torch::Tensor& t) {
  VDP_ASSERT(t.is_cuda() && t.get_device() == impl_->device && t.is_contiguous(),
             "NCCL all-reduce needs a contiguous tensor on cuda:", impl_->device);
  if (t.numel() == 0) return;
  all_reduce_sum_async(t)->wait();
}

std::unique_ptr<Work> NcclCommunicator::all_reduce_sum_async(const torch::Tensor& t) {
  VDP_ASSERT(t.is_cuda() && t.get_device() == impl_->device && t.is_contiguous(),
             "NCCL all-reduce needs a contiguous tensor on cuda:", impl_->device);
  auto w = std::make_unique<NcclWork>();
  w->device = impl_->device;
  w->done = impl_->on_comm_stream(t, [&](cudaStream_t s) {
    NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t.scalar_type()), ncclSum,
                             impl_->comm, s));
  });
  impl_->track(w->done, "all-reduce", t.numel() * static_cast<int64_t>(t.element_size()));
  return w;
}

void NcclCommunicator::broadcast(const torch::Tensor& t, int root) {
  VDP_ASSERT(t.is_cuda() && t.get_device() == impl_->device && t.is_contiguous(),
             "NCCL broadcast needs a contiguous tensor on cuda:", impl_->device);
  if (t.numel() == 0) return;
  auto done = impl_->on_comm_stream(t, [&](cudaStream_t s) {
    NCCL_CHECK(ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t.scalar_type()), root,
                             impl_->comm, s));
  });
  impl_->track(done, "broadcast", t.numel() * static_cast<int64_t>(t.element_size()));
  done->block(c10::cuda::getCurrentCUDAStream(impl_->device));
}

// The in-place chunked collectives: `launch(base, mine, chunk, stream)` with `mine` the address of
// this rank's chunk; waited for by the current stream, under the watchdog like the others.
template <typename Launch>
void NcclCommunicator::chunked(const char* what, const torch::Tensor& t, Launch&& launch) {
  VDP_ASSERT(t.is_cuda() && t.get_device() == impl_->device && t.is_contiguous() && t.numel() % size_ == 0, "NCCL ",
             what, " needs a contiguous tensor on cuda:", impl_->device, " of W equal chunks");
  if (t.numel() == 0) return;
  const int64_t c = t.numel() / size_;
  auto done = impl_->on_comm_stream(t, [&](cudaStream_t s) {
    char* base = static_cast<char*>(t.data_ptr());
    launch(base, base + rank_ * c * static_cast<int64_t>(t.element_size()), c, s);
  });
  impl_->track(done, what, t.numel() * static_cast<int64_t>(t.element_size()));
  done->block(c10::cuda::getCurrentCUDAStream(impl_->device));
}

void NcclCommunicator::reduce_scatter_sum(const torch::Tensor& t) {
  chunked("reduce-scatter", t, [&](char* base, char* mine, int64_t c, cudaStream_t s) {
    NCCL_CHECK(ncclReduceScatter(base, mine, c, nccl_type(t.scalar_type()), ncclSum, impl_->comm, s));
  });
}

void NcclCommunicator::all_gather(const torch::Tensor& t) {
  chunked("all-gather", t, [&](char* base, char* mine, int64_t c, cudaStream_t s) {
    NCCL_CHECK(ncclAllGather(mine, base, c, nccl_type(t.scalar_type()), impl_->comm, s));
  });
}

void NcclCommunicator::barrier() {
  // A one-element all-reduce, waited for on the host: NCCL has no barrier of its own.
  auto t = torch::zeros({1}, torch::TensorOptions().device(device()));
  all_reduce_sum(t);
  c10::cuda::getCurrentCUDAStream(impl_->device).synchronize();
}

}  // namespace vdp
