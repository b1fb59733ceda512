#include "vdp/dist/mpi_communicator.h"

#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "vdp/core/error.h"
#include "vdp/dist/mpi_env.h"

namespace vdp {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kTagQuery = 1, kTagAnswer = 2;
constexpr double kAnswerWindowSeconds = 2.0;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Waiting politely: spin (yielding) for the first milliseconds, where a CPU all-reduce usually
// completes, then sleep briefly so W oversubscribed ranks leave the cores to the one computing.
void pause_after(double waited) {
  if (waited < 2e-3) sched_yield();
  else std::this_thread::sleep_for(std::chrono::microseconds(waited < 0.1 ? 20 : 200));
}

// Completes a request that will never be waited for (a failure path): MPI forbids freeing an
// active collective request, and its buffer must stay valid, so both are left to the process end.
void abandon(MPI_Request& request, const torch::Tensor& buffer) {
  if (request == MPI_REQUEST_NULL) return;
  new torch::Tensor(buffer);  // NOLINT: intentionally leaked, see above
  request = MPI_REQUEST_NULL;
}

}  // namespace

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

MpiCommunicator::MpiCommunicator(MPI_Comm world, double timeout_s) {
  timeout_s_ = timeout_s;
  VDP_MPI_CHECK(MPI_Comm_rank(world, &rank_));
  VDP_MPI_CHECK(MPI_Comm_size(world, &size_));
  // Duplicating is a collective too: bounded like the rest (MPI_Comm_idup).
  for (MPI_Comm* out : {&comm_, &ctrl_}) {
    MPI_Request r = MPI_REQUEST_NULL;
    VDP_MPI_CHECK(MPI_Comm_idup(world, out, &r));
    const auto t0 = Clock::now();
    for (int done = 0;;) {
      VDP_MPI_CHECK(MPI_Test(&r, &done, MPI_STATUS_IGNORE));
      if (done) break;
      if (since(t0) > timeout_s_)
        throw TimeoutError(detail::format("rank ", rank_, " timed out after ", timeout_s_,
                                          " s creating its communicator (start-up): a rank did not arrive "
                                          "(raise --timeout if start-up is slow)"));
      pause_after(since(t0));
    }
  }
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(ctrl_, MPI_ERRORS_RETURN);
  watchdog_ = std::thread([this] { watchdog(); });
}

MpiCommunicator::~MpiCommunicator() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    cv_.notify_one();
  }
  if (watchdog_.joinable()) watchdog_.join();
  int finalized = 0;
  MPI_Finalized(&finalized);
  // Freeing a communicator is local in Open MPI, but only free it on a clean exit: on a failure
  // path the job is about to abort and requests may still reference it.
  if (!finalized && std::uncaught_exceptions() == 0) {
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
    if (ctrl_ != MPI_COMM_NULL) MPI_Comm_free(&ctrl_);
  }
}

void MpiCommunicator::answer_queries(int64_t current_seq) {
  for (;;) {
    int flag = 0;
    MPI_Status st;
    MPI_Iprobe(MPI_ANY_SOURCE, kTagQuery, ctrl_, &flag, &st);
    if (!flag) return;
    int64_t asked = 0;
    MPI_Recv(&asked, 1, MPI_INT64_T, st.MPI_SOURCE, kTagQuery, ctrl_, MPI_STATUS_IGNORE);
    // An 8-byte message goes eagerly: the send completes without the asker's receive.
    MPI_Send(&current_seq, 1, MPI_INT64_T, st.MPI_SOURCE, kTagAnswer, ctrl_);
  }
}

void MpiCommunicator::wait(MPI_Request& request, int64_t seq, const char* what, int64_t bytes) {
  const auto t0 = Clock::now();
  for (;;) {
    int done = 0;
    VDP_MPI_CHECK(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (done) return;
    const double waited = since(t0);
    if (waited > 1e-3) answer_queries(seq);
    if (waited > timeout_s_) timed_out(seq, what, bytes, waited);
    pause_after(waited);
  }
}

void MpiCommunicator::timed_out(int64_t seq, const char* what, int64_t bytes, double waited) {
  // Note [who did not arrive].
  std::vector<int64_t> answer(size_, -1);
  std::vector<MPI_Request> sends, recvs(size_, MPI_REQUEST_NULL);
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    MPI_Request s;
    MPI_Isend(&seq, 1, MPI_INT64_T, r, kTagQuery, ctrl_, &s);
    MPI_Request_free(&s);
    MPI_Irecv(&answer[r], 1, MPI_INT64_T, r, kTagAnswer, ctrl_, &recvs[r]);
  }
  answer[rank_] = seq;
  const auto t0 = Clock::now();
  while (since(t0) < kAnswerWindowSeconds) {
    answer_queries(seq);
    int all = 0;
    MPI_Testall(size_, recvs.data(), &all, MPI_STATUSES_IGNORE);
    if (all) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::string missing;
  int lowest_arrived = rank_;
  // A rank that answered is alive and inside a collective; one that answered with a lower number
  // waits in an earlier collective that the missing rank(s) also block (with non-blocking
  // collectives ranks can be one apart). The ranks that did not answer are the ones missing.
  std::string behind;
  for (int r = 0; r < size_; ++r) {
    if (answer[r] >= 0) lowest_arrived = std::min(lowest_arrived, r);
    if (answer[r] < 0) missing += (missing.empty() ? "" : ",") + std::to_string(r);
    else if (answer[r] < seq) behind += (behind.empty() ? "" : ",") + std::to_string(r);
  }
  if (missing.empty() && !behind.empty()) missing = behind + " (still in an earlier collective)";
  if (lowest_arrived != rank_) {
    // Another rank that arrived reports it and aborts the job; wait to be ended by it, keeping
    // answering, and abort on our own only if that never comes.
    const auto t1 = Clock::now();
    while (since(t1) < 10) {
      answer_queries(seq);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  throw TimeoutError(detail::format(
      "timed out after ", static_cast<int64_t>(waited), " s (--timeout ", timeout_s_, ") in ", what, " #", seq,
      " (", bytes, " bytes) during ", phase_, ": rank(s) ", missing.empty() ? std::string("?") : missing,
      " did not arrive (stopped, dead or slower than the timeout; raise --timeout if a step legitimately takes "
      "longer)"));
}

int64_t MpiCommunicator::arrive(const char* what, int64_t bytes) {
  const int64_t seq = ++seq_;
  MPI_Request r = MPI_REQUEST_NULL;
  VDP_MPI_CHECK(MPI_Ibarrier(comm_, &r));
  wait(r, seq, what, bytes);  // a barrier request holds no buffer: nothing to keep on failure
  return seq;
}

void MpiCommunicator::guard_begin(int64_t seq, const char* what, int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  guarded_ = true;
  deadline_ = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s_ * 1000));
  guard_what_ = detail::format(what, " #", seq, " (", bytes, " bytes) during ", phase_);
  cv_.notify_one();
}

void MpiCommunicator::guard_end() {
  std::lock_guard<std::mutex> lock(mu_);
  guarded_ = false;
}

void MpiCommunicator::watchdog() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (!guarded_) {
      cv_.wait(lock);
      continue;
    }
    cv_.wait_until(lock, deadline_);
    if (guarded_ && !stopping_ && Clock::now() >= deadline_) {
      // No MPI call may come from this thread (MPI_THREAD_FUNNELED): the process ends itself and
      // the launcher ends the job on its non-zero exit.
      const MpiEnv& env = MpiEnv::get();
      std::fprintf(stderr,
                   "%s: timeout [rank %d of %d on %s]: timed out after %g s (--timeout) inside %s: a rank "
                   "stopped or died during the transfer\n",
                   MpiEnv::program(), rank_, size_, env.host().c_str(), timeout_s_, guard_what_.c_str());
      std::fflush(stderr);
      std::_Exit(kExitTimeout);
    }
  }
}

template <typename Call>
void MpiCommunicator::blocking(const char* what, const torch::Tensor& t, Call&& call) {
  VDP_ASSERT(t.device().is_cpu() && t.is_contiguous(), "MPI ", what, " needs a contiguous CPU tensor");
  VDP_ASSERT(t.numel() <= INT32_MAX, "tensor too large for one MPI call");
  if (t.numel() == 0) {
    ++seq_;
    return;
  }
  // Note [blocking collectives]: a bounded barrier, then the blocking call under the watchdog.
  const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
  const int64_t seq = arrive(what, bytes);
  guard_begin(seq, what, bytes);
  try {
    call(static_cast<int>(t.numel()), mpi_datatype(t.scalar_type()));
  } catch (...) {
    guard_end();
    throw;
  }
  guard_end();
}

void MpiCommunicator::all_reduce_sum(const torch::Tensor& t) {
  blocking("all-reduce", t, [&](int n, MPI_Datatype type) {
    VDP_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), n, type, MPI_SUM, comm_));
  });
}

void MpiCommunicator::broadcast(const torch::Tensor& t, int root) {
  blocking("broadcast", t, [&](int n, MPI_Datatype type) { VDP_MPI_CHECK(MPI_Bcast(t.data_ptr(), n, type, root, comm_)); });
}

void MpiCommunicator::reduce_scatter_sum(const torch::Tensor& t) {
  VDP_ASSERT(t.numel() % size_ == 0, "reduce-scatter of ", t.numel(), " elements over ", size_, " ranks");
  const int64_t c = t.numel() / size_;
  const torch::Tensor mine = t.narrow(0, rank_ * c, c);
  const torch::Tensor out = torch::empty_like(mine);
  blocking("reduce-scatter", t, [&](int, MPI_Datatype type) {
    VDP_MPI_CHECK(MPI_Reduce_scatter_block(t.data_ptr(), out.data_ptr(), static_cast<int>(c), type, MPI_SUM, comm_));
  });
  if (c > 0) mine.copy_(out);
}

void MpiCommunicator::all_gather(const torch::Tensor& t) {
  VDP_ASSERT(t.numel() % size_ == 0, "all-gather of ", t.numel(), " elements over ", size_, " ranks");
  const int c = static_cast<int>(t.numel() / size_);
  blocking("all-gather", t, [&](int, MPI_Datatype type) {
    VDP_MPI_CHECK(MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, t.data_ptr(), c, type, comm_));
  });
}

void MpiCommunicator::barrier() { arrive("barrier", 0); }

namespace {
struct MpiWork : Work {
  MpiCommunicator* comm = nullptr;
  MPI_Request request = MPI_REQUEST_NULL;
  int64_t seq = 0;
  torch::Tensor keep;  // the buffer must outlive the operation
  void wait() override {
    if (request == MPI_REQUEST_NULL) return;
    try {
      comm->wait(request, seq, "all-reduce", keep.numel() * static_cast<int64_t>(keep.element_size()));
    } catch (...) {
      abandon(request, keep);
      throw;
    }
  }
  // Never waits: a Work destroyed unfinished is on a failure path (Note [bounded collectives]).
  ~MpiWork() override { abandon(request, keep); }
};
}  // namespace

std::unique_ptr<Work> MpiCommunicator::all_reduce_sum_async(const torch::Tensor& t) {
  VDP_ASSERT(t.device().is_cpu() && t.is_contiguous(), "MPI all-reduce needs a contiguous CPU tensor");
  auto w = std::make_unique<MpiWork>();
  w->comm = this;
  w->keep = t;
  w->seq = ++seq_;
  if (t.numel() == 0) return w;
  VDP_ASSERT(t.numel() <= INT32_MAX, "tensor too large for one MPI call");
  progress();
  VDP_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()), mpi_datatype(t.scalar_type()),
                           MPI_SUM, comm_, &w->request));
  return w;
}

void MpiCommunicator::progress() {
  // Any MPI call that enters the progress engine moves the collectives in flight along.
  int flag = 0;
  MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &flag, MPI_STATUS_IGNORE);
}

}  // namespace vdp
