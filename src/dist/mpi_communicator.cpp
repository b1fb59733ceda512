#include "vdp/dist/mpi_communicator.h"

#include "vdp/core/error.h"
#include "vdp/dist/mpi_env.h"

namespace vdp {

MPI_Datatype mpi_datatype(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return MPI_FLOAT;
    case torch::kFloat64: return MPI_DOUBLE;
    case torch::kInt64: return MPI_INT64_T;
    case torch::kInt32: return MPI_INT32_T;
    case torch::kInt8: return MPI_INT8_T;
    case torch::kUInt8: return MPI_UINT8_T;
    default: break;
  }
  VDP_ASSERT(false, "the MPI backend has no datatype for ", t, "; keep gradients in float32/float64");
  return MPI_DATATYPE_NULL;
}

MpiCommunicator::MpiCommunicator(MPI_Comm world) {
  MPI_CHECK(MPI_Comm_dup(world, &comm_));
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  MPI_CHECK(MPI_Comm_size(comm_, &size_));
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void MpiCommunicator::all_reduce_sum(const torch::Tensor& t) {
  VDP_ASSERT(t.device().is_cpu() && t.is_contiguous(), "MPI all-reduce needs a contiguous CPU tensor");
  if (t.numel() == 0) return;
  VDP_ASSERT(t.numel() <= INT32_MAX, "tensor too large for one MPI call");
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()), mpi_datatype(t.scalar_type()),
                          MPI_SUM, comm_));
}

void MpiCommunicator::broadcast(const torch::Tensor& t, int root) {
  VDP_ASSERT(t.device().is_cpu() && t.is_contiguous(), "MPI broadcast needs a contiguous CPU tensor");
  if (t.numel() == 0) return;
  MPI_CHECK(MPI_Bcast(t.data_ptr(), static_cast<int>(t.numel()), mpi_datatype(t.scalar_type()), root, comm_));
}

void MpiCommunicator::barrier() { MPI_CHECK(MPI_Barrier(comm_)); }

namespace {
struct MpiWork : Work {
  MPI_Request request = MPI_REQUEST_NULL;
  torch::Tensor keep;  // the buffer must outlive the operation
  void wait() override {
    if (request != MPI_REQUEST_NULL) MPI_CHECK(MPI_Wait(&request, MPI_STATUS_IGNORE));
  }
  ~MpiWork() override {
    if (request != MPI_REQUEST_NULL) MPI_Wait(&request, MPI_STATUS_IGNORE);
  }
};
}  // namespace

std::unique_ptr<Work> MpiCommunicator::all_reduce_sum_async(const torch::Tensor& t) {
  VDP_ASSERT(t.device().is_cpu() && t.is_contiguous(), "MPI all-reduce needs a contiguous CPU tensor");
  auto w = std::make_unique<MpiWork>();
  w->keep = t;
  if (t.numel() == 0) return w;
  VDP_ASSERT(t.numel() <= INT32_MAX, "tensor too large for one MPI call");
  progress();
  MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()), mpi_datatype(t.scalar_type()),
                           MPI_SUM, comm_, &w->request));
  return w;
}

void MpiCommunicator::progress() {
  // Any MPI call that enters the progress engine moves the collectives in flight along.
  int flag = 0;
  MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &flag, MPI_STATUS_IGNORE);
}

}  // namespace vdp
