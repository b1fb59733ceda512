#include "vdp/data/loader.h"

#ifdef VDP_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "vdp/core/error.h"
#include "vdp/core/thread_device.h"

namespace vdp {

BatchLoader::BatchLoader(std::shared_ptr<const Dataset> data, const Plan& plan, int rank, int64_t first_step,
                         int64_t end_step, torch::Device device, LoaderOptions opts)
    : data_(std::move(data)),
      plan_(plan.params()),
      rank_(rank),
      device_(device),
      opts_(opts),
      step_(first_step),
      end_step_(end_step),
      per_epoch_(plan_.steps_per_epoch()) {
  VDP_ASSERT(opts_.depth >= 0, "prefetch depth must be >= 0");
#ifdef VDP_WITH_CUDA
  if (device_.is_cuda())
    copy_stream_ = std::make_shared<c10::cuda::CUDAStream>(
        c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device_.index()));
#endif
  if (opts_.depth > 0 && step_ < end_step_) thread_ = std::thread([this] { run(); });
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

BatchLoader::Item BatchLoader::produce() {
  Item item;
  LoadedSlot& s = item.slot;
  s.epoch = step_ / per_epoch_;
  s.epoch_step = step_ % per_epoch_;
  s.k = k_;
  if (++k_ == plan_.micro_steps(s.epoch_step)) k_ = 0, ++step_;
  try {
    s.ids = plan_.slot(s.epoch, s.epoch_step, s.k, rank_);
    if (s.ids.empty() && opts_.skip_empty) return item;
    if (!device_.is_cuda()) {
      Batch b = data_->get(s.ids);
      s.batch = device_.is_cpu() ? std::move(b) : b.to(device_);
      return item;
    }
#ifdef VDP_WITH_CUDA
    // Pinned host memory, copied on the copy stream; the consumer's stream waits for the event. A
    // dataset resident on the device (data/resident.h) gathers on the copy stream itself.
    c10::cuda::CUDAGuard device_guard(device_);
    const auto& stream = *std::static_pointer_cast<c10::cuda::CUDAStream>(copy_stream_);
    {
      c10::cuda::CUDAStreamGuard stream_guard(stream);
      Batch b = data_->get(s.ids);
      if (b.x.is_cuda()) {
        s.batch = std::move(b);
      } else {
        auto pin = [](const torch::Tensor& t) { return t.defined() ? t.pin_memory() : t; };
        s.batch = Batch{pin(b.x), pin(b.y), pin(b.mask)}.to(device_);
      }
    }
    auto done = std::make_shared<at::cuda::CUDAEvent>();
    done->record(stream);
    std::vector<torch::Tensor> tensors{s.batch.x, s.batch.y, s.batch.mask};
    const torch::Device device = device_;
    item.ready = [done, tensors, device] {
      const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream(device.index());
      done->block(current);
      // Allocated on the copy stream, used on the compute stream: the caching allocator must not
      // hand this memory out again before the compute stream is done with it.
      for (const auto& t : tensors)
        if (t.defined() && t.numel() > 0) c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), current);
    };
#else
    VDP_ASSERT(false, "a CUDA device in a build without CUDA");
#endif
  } catch (...) {
    item.error = std::current_exception();
  }
  return item;
}

void BatchLoader::run() {
  // The producer's own thread works on the rank's device (device/compute_stream.h: bind_device).
  try {
    bind_device(device_);
  } catch (...) {
    Item item;
    item.error = std::current_exception();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(item));
      done_ = true;
    }
    cv_.notify_all();
    return;
  }
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return stop_ || static_cast<int64_t>(queue_.size()) < opts_.depth; });
      if (stop_) return;
    }
    Item item = produce();  // outside the lock: the consumer takes ready slots meanwhile
    const bool finished = item.error != nullptr || step_ >= end_step_;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(item));
      done_ = finished;
    }
    cv_.notify_all();
    if (finished) return;
  }
}

LoadedSlot BatchLoader::next() {
  Item item;
  if (opts_.depth == 0) {
    VDP_ASSERT(step_ < end_step_, "the loader ran past its last step");
    item = produce();
  } else {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [this] { return !queue_.empty() || done_; });
    VDP_ASSERT(!queue_.empty(), "the loader ran past its last step");
    item = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    cv_.notify_all();
  }
  if (item.error) std::rethrow_exception(item.error);
  if (item.ready) item.ready();
  return std::move(item.slot);
}

}  // namespace vdp
