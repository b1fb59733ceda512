// MPI backend for CPU tensors: non-blocking MPI collectives (MPI_Iallreduce / MPI_Ibcast /
// MPI_Ibarrier) on a duplicate of the world communicator (so vdp's traffic never matches a user's
// messages), each waited for against a deadline (Note [bounded collectives] in communicator.h).
//
// Note [who did not arrive]: a second duplicate carries a tiny status protocol. While a rank waits
// for a collective it answers status queries with the sequence number of the collective it is in.
// A rank whose wait expires asks every other rank and waits two seconds for answers: a rank that
// does not answer (stopped, dead, or busy outside vdp's collectives) did not arrive. A rank that
// answers is alive in some collective (with non-blocking collectives, possibly one earlier than
// ours). Of the ranks that answered, the lowest reports the timeout; the others wait to be ended by
// its MPI_Abort, so the job ends with one line.
//
// Note [blocking collectives]: Open MPI's blocking collectives (the "tuned" component) are about
// twice as fast as its non-blocking ones (libnbc) on a 1.7 MB all-reduce here (177 us vs 343 us at
// W=2), so the blocking all_reduce_sum() and broadcast() keep them: each first passes a
// non-blocking barrier waited for against the deadline (where a stalled rank is caught and named),
// then runs the blocking call under a watchdog thread, which ends the process with exit 4 if the
// call itself outlives the deadline (a rank stopped mid-transfer). all_reduce_sum_async() (buckets
// during backward) needs the non-blocking call and waits for it against the deadline.
#pragma once

#include <mpi.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

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
  // MPI_Reduce_scatter_block into a chunk-sized buffer, copied into this rank's chunk; and
  // MPI_Allgather in place. Blocking calls under the same deadlines (Note [blocking collectives]).
  void reduce_scatter_sum(const torch::Tensor& t) override;
  void all_gather(const torch::Tensor& t) override;
  void barrier() override;
  // MPI_Iallreduce. Open MPI progresses non-blocking collectives inside MPI calls: starting a new
  // one also tests the ones in flight, so buckets launched during backward keep moving.
  std::unique_ptr<Work> all_reduce_sum_async(const torch::Tensor& t) override;
  void progress();

  // Waits for `request` (a collective numbered `seq`) until the deadline; TimeoutError after it.
  void wait(MPI_Request& request, int64_t seq, const char* what, int64_t bytes);

 private:
  void answer_queries(int64_t current_seq);
  // Note [blocking collectives]: the barrier before, and the watchdog around, a blocking call.
  int64_t arrive(const char* what, int64_t bytes);
  template <typename Call>
  void blocking(const char* what, const torch::Tensor& t, Call&& call);
  void guard_begin(int64_t seq, const char* what, int64_t bytes);
  void guard_end();
  void watchdog();
  [[noreturn]] void timed_out(int64_t seq, const char* what, int64_t bytes, double waited);

  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Comm ctrl_ = MPI_COMM_NULL;  // Note [who did not arrive]
  int rank_ = 0, size_ = 1;
  int64_t seq_ = 0;  // collectives started on this communicator

  std::mutex mu_;
  std::condition_variable cv_;
  bool guarded_ = false, stopping_ = false;
  std::chrono::steady_clock::time_point deadline_{};
  std::string guard_what_;
  std::thread watchdog_;
};

// MPI datatype of a tensor dtype (float32/64, int8/32/64, uint8); InternalError for others.
MPI_Datatype mpi_datatype(torch::ScalarType t);

}  // namespace vdp
