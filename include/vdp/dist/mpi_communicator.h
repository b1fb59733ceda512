// MPI backend for CPU tensors: non-blocking MPI collectives (MPI_Iallreduce / MPI_Ibcast /
// MPI_Ibarrier) on a duplicate of the world communicator (so vdp's traffic never matches a user's
// messages), each waited for against a deadline (Note [bounded collectives] in communicator.h).
//
// Note [who did not arrive]: a second duplicate carries a tiny status protocol. While a rank waits
// for a collective it answers status queries with the sequence number of the collective it is in.
// A rank whose wait expires asks every other rank and waits two seconds for answers: a rank that
// does not answer (stopped, dead, or busy outside vdp's collectives) or answers with a lower number
// did not arrive. Of the ranks that did arrive, the lowest reports the timeout; the others wait to be
// ended by its MPI_Abort, so the job ends with one line.
#pragma once

#include <mpi.h>

#include <string>

#include "vdp/dist/communicator.h"

namespace vdp {

class MpiCommunicator : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm world, double timeout_s = 600);
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

  // Waits for `request` (a collective numbered `seq`) until the deadline; TimeoutError after it.
  void wait(MPI_Request& request, int64_t seq, const char* what, int64_t bytes);

 private:
  void answer_queries(int64_t current_seq);
  [[noreturn]] void timed_out(int64_t seq, const char* what, int64_t bytes, double waited);

  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Comm ctrl_ = MPI_COMM_NULL;  // Note [who did not arrive]
  int rank_ = 0, size_ = 1;
  int64_t seq_ = 0;  // collectives started on this communicator
};

// MPI datatype of a tensor dtype (float32/64, int8/32/64, uint8); InternalError for others.
MPI_Datatype mpi_datatype(torch::ScalarType t);

}  // namespace vdp
