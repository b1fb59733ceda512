// MPI backend for CPU tensors: in-place MPI_Allreduce / MPI_Bcast on a duplicate of the world
// communicator (so vdp's traffic never matches a user's messages).
#pragma once

#include <mpi.h>

#include "vdp/dist/communicator.h"

namespace vdp {

class MpiCommunicator : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm world);
  ~MpiCommunicator() override;
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "mpi"; }
  torch::Device device() const override { return torch::kCPU; }
  void all_reduce_sum(const torch::Tensor& t) override;
  void broadcast(const torch::Tensor& t, int root) override;
  void barrier() override;
  // MPI_Iallreduce. Open MPI progresses non-blocking collectives inside MPI calls: starting a new
  // one also tests the ones in flight, so buckets launched during backward keep moving.
  std::unique_ptr<Work> all_reduce_sum_async(const torch::Tensor& t) override;
  void progress();

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
};

// MPI datatype of a tensor dtype (float32/64, int8/32/64, uint8); InternalError for others.
MPI_Datatype mpi_datatype(torch::ScalarType t);

}  // namespace vdp
