#include "vdp/dist/nccl_communicator.h"

#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <nccl.h>

#include "vdp/core/error.h"
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

struct NcclCommunicator::Impl {
  int device = 0;
  ncclComm_t comm = nullptr;
  c10::cuda::CUDAStream stream = c10::cuda::getDefaultCUDAStream();

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
}  // namespace

NcclCommunicator::NcclCommunicator(MPI_Comm world, int rank, int size, int cuda_device)
    : impl_(std::make_unique<Impl>()), rank_(rank), size_(size) {
  impl_->device = cuda_device;
  c10::cuda::CUDAGuard guard(cuda_device);
  ncclUniqueId id;
  if (rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  if (size > 1) {
    VDP_ASSERT(world != MPI_COMM_NULL, "NCCL at world size > 1 needs MPI to share its id");
    MPI_CHECK(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, world));
  }
  NCCL_CHECK(ncclCommInitRank(&impl_->comm, size, id, rank));
  impl_->stream = c10::cuda::getStreamFromPool(/*isHighPriority=*/true, cuda_device);
}

NcclCommunicator::~NcclCommunicator() {
  if (impl_ && impl_->comm) ncclCommDestroy(impl_->comm);
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
  done->block(c10::cuda::getCurrentCUDAStream(impl_->device));
}

void NcclCommunicator::barrier() {
  // A one-element all-reduce, waited for on the host: NCCL has no barrier of its own.
  auto t = torch::zeros({1}, torch::TensorOptions().device(device()));
  all_reduce_sum(t);
  c10::cuda::getCurrentCUDAStream(impl_->device).synchronize();
}

}  // namespace vdp
