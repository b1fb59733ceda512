// The collective interface the trainer holds (include/vdp/README.md, "Habits": W=1 is a backend, not an `if`).
// Backends: self (one process), MPI (CPU tensors), NCCL (CUDA tensors). Every rank must issue the
// same collectives in the same order; the trainer guarantees that by construction.
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

namespace vdp {

// Note [bounded collectives]: every wait of a backend has a deadline, timeout() seconds after the
// wait began (--timeout, 600 by default, like PyTorch's process groups). A rank that does not
// arrive in time makes the waiting ranks throw vdp::TimeoutError naming the collective, its
// sequence number, the phase the trainer set (step, evaluation, ...) and, where the backend can
// tell, the ranks that did not arrive. Destructors never wait on communication in flight: on a
// failure path the process aborts (abort(), then MPI_Abort) and leaves it.

// A collective in flight. wait() returns when the result may be used by work issued afterwards on
// the current stream (CPU: the data is there; CUDA: the current stream waits on an event).
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;
  // Device that tensors passed to the collectives must live on.
  virtual torch::Device device() const = 0;

  // In-place sum over ranks. `t` must be contiguous and on device(). Returns when the result is
  // ready for work issued afterwards on the current stream (CUDA: ordered by events, no host wait).
  virtual void all_reduce_sum(const torch::Tensor& t) = 0;
  // In-place copy of `root`'s tensor to every rank. Same preconditions.
  virtual void broadcast(const torch::Tensor& t, int root) = 0;
  // In place over `t` seen as size() equal chunks (numel divisible by size()): afterwards chunk
  // rank() holds the sum over ranks of that chunk; the other chunks are left unspecified. Half of a
  // ring all-reduce's traffic (optim/shard.h). The default all-reduces the whole tensor.
  virtual void reduce_scatter_sum(const torch::Tensor& t);
  // In place over size() equal chunks: afterwards chunk r holds rank r's chunk r on every rank. The
  // other half of a ring all-reduce's traffic. The default sums with the other chunks zeroed.
  virtual void all_gather(const torch::Tensor& t);
  virtual void barrier() = 0;
  // Ends this rank's part in communication in flight without waiting (ncclCommAbort for NCCL),
  // before the process aborts. After it the communicator must not be used.
  virtual void abort() {}
  // Starts an in-place sum and returns at once. Collectives started on one rank must be started in
  // the same order on every rank. The default runs the blocking one.
  virtual std::unique_ptr<Work> all_reduce_sum_async(const torch::Tensor& t);

  // Sums small host vectors over ranks (evaluation counts and the like), through all_reduce_sum.
  std::vector<double> all_reduce_host(const std::vector<double>& values);
  // Rank `root`'s values on every rank, through broadcast.
  std::vector<double> broadcast_host(const std::vector<double>& values, int root);
  // Rank `root`'s string on every rank (two broadcasts: length, bytes).
  std::string broadcast_string(const std::string& s, int root);

  // Seconds one wait may take before TimeoutError (> 0).
  void set_timeout(double seconds) { timeout_s_ = seconds; }
  double timeout() const { return timeout_s_; }
  // What the caller is doing ("step 12: gradient reduction"), named in timeout messages.
  void set_phase(std::string phase) { phase_ = std::move(phase); }
  const std::string& phase() const { return phase_; }

 protected:
  double timeout_s_ = 600;
  std::string phase_ = "start-up";
};

// World size 1: every collective is the identity.
class SelfCommunicator : public Communicator {
 public:
  explicit SelfCommunicator(torch::Device device = torch::kCPU) : device_(device) {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "self"; }
  torch::Device device() const override { return device_; }
  void all_reduce_sum(const torch::Tensor& t) override;
  void broadcast(const torch::Tensor& t, int root) override;
  void reduce_scatter_sum(const torch::Tensor& t) override;
  void all_gather(const torch::Tensor& t) override;
  void barrier() override {}

 private:
  torch::Device device_;
};

}  // namespace vdp
