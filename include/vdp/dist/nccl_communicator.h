// NCCL backend for CUDA tensors (built when VDP_WITH_NCCL). The unique id is made on rank 0 and
// broadcast over MPI. Collectives run on a dedicated communication stream: an event recorded on
// the caller's current stream makes the communication stream wait for the data, and an event
// recorded after the collective makes the caller's stream wait for the result. No host waits.
#pragma once

#include <mpi.h>

#include <memory>

#include "vdp/dist/communicator.h"

namespace vdp {

class NcclCommunicator : public Communicator {
 public:
  // `world` may be MPI_COMM_NULL at world size 1 (no MPI): the id is then made locally.
  // Every collective is watched against `timeout_s` (Note [NCCL watchdog] in the source).
  NcclCommunicator(MPI_Comm world, int rank, int size, int cuda_device, double timeout_s = 600);
  ~NcclCommunicator() override;
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "nccl"; }
  torch::Device device() const override;
  void all_reduce_sum(const torch::Tensor& t) override;
  void broadcast(const torch::Tensor& t, int root) override;
  // ncclReduceScatter and ncclAllGather in place (NCCL's in-place forms: this rank's chunk is the
  // receive buffer at offset rank · chunk of the send buffer, and the other way round).
  void reduce_scatter_sum(const torch::Tensor& t) override;
  void all_gather(const torch::Tensor& t) override;
  void barrier() override;
  void abort() override;
  // ncclAllReduce on the communication stream; wait() makes the current stream wait on its event.
  std::unique_ptr<Work> all_reduce_sum_async(const torch::Tensor& t) override;

 private:
  template <typename Launch>
  void chunked(const char* what, const torch::Tensor& t, Launch&& launch);
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int rank_ = 0, size_ = 1;
};

}  // namespace vdp
