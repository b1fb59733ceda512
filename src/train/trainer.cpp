#include "vdp/train/trainer.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>
#ifdef VDP_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif
#include <torch/optim/optimizer.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>

#include "vdp/amp/autocast.h"
#include "vdp/amp/grad_scaler.h"
#include "vdp/ckpt/checkpoint_dir.h"
#include "vdp/ckpt/safetensors.h"
#include "vdp/core/error.h"
#include "vdp/core/thread_device.h"
#include "vdp/data/loader.h"
#include "vdp/data/resident.h"
#include "vdp/device/busy.h"
#include "vdp/device/compute_stream.h"
#include "vdp/device/determinism.h"
#include "vdp/grad/flat_grads.h"
#include "vdp/optim/fused_optim.h"
#include "vdp/optim/optim.h"
#include "vdp/report/step_log.h"
#include "vdp/train/rank_agreement.h"

namespace vdp {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

// Per tensor, in float64: its sum and its sum of squares (the model checksum, the replica check).
std::vector<double> sums_and_squares(const std::vector<torch::Tensor>& tensors) {
  std::vector<double> out;
  for (const auto& t : tensors) {
    const torch::Tensor d = t.detach().to(torch::kFloat64);
    out.push_back(d.sum().item<double>());
    out.push_back(d.pow(2).sum().item<double>());
  }
  return out;
}

std::pair<double, double> parameter_checksum(const torch::nn::Module& module) {
  const std::vector<double> v = sums_and_squares(module.parameters());
  double sum = 0, sq = 0;
  for (size_t i = 0; i < v.size(); i += 2) sum += v[i], sq += v[i + 1];
  return {sum, std::sqrt(sq)};
}

Trainer::Trainer(Config cfg, Task task, std::shared_ptr<Communicator> comm)
    : cfg_(std::move(cfg)),
      task_(std::move(task)),
      comm_(std::move(comm)),
      device_(comm_->device()),
      // --micro-batch auto (0) is planned for m = 1 until the search has chosen.
      plan_(PlanParams{task_.train->size(), cfg_.global_batch, comm_->size(), std::max<int64_t>(1, cfg_.micro_batch),
                       cfg_.seed, cfg_.drop_last, cfg_.shuffle}) {
  // Every device operation of the trainer on its compute stream (Note [one compute stream]), from the
  // first: the model's move, the broadcast, the gradient accumulators the window creates.
  bind_device(device_);
  const ComputeStreamScope compute(device_);
  const int64_t per_epoch = plan_.steps_per_epoch();
  total_steps_ = per_epoch * cfg_.epochs;
  if (cfg_.max_steps > 0) total_steps_ = std::min(total_steps_, cfg_.max_steps);

  if (cfg_.deterministic) enable_determinism();
  comm_->set_phase("start-up: checking that every rank has the same options and data");
  check_ranks_agree(cfg_, task_, *comm_);
  comm_->set_phase("start-up");
  VDP_CHECK(cfg_.gpu_busy_steps == 0 || device_.is_cuda(), "--gpu-busy-steps measures a GPU, but this run is on ",
            device_, ": leave it out or train with --device cuda");
  // The training set on the GPU, when asked and when it fits (refused with one line otherwise).
  if (cfg_.data_on_device && device_.is_cuda()) task_.train = std::make_shared<ResidentDataset>(task_.train, device_);
  task_.model->to(device_);
  if (!cfg_.init_weights.empty()) load_module_state(*task_.model, cfg_.init_weights);
  sync_initial_state();
  if (cfg_.micro_batch == 0) choose_micro_batch();  // before the window: its chunk size is chosen here
  window_ = std::make_unique<Window>(cfg_, task_, comm_, [this] {
    if (stop_source_ && stop_signal_ == 0) stop_signal_ = stop_source_();
    return stop_signal_ != 0;
  });
  schedule_ = std::make_unique<LrSchedule>(cfg_, total_steps_);
  window_->on_out_of_memory([this](int64_t step, int64_t from, int64_t to, const std::string& why) {
    log_->out_of_memory(comm_->rank(), step, from, to, why);
    if (memory_observer_) memory_observer_(step, from, to, why);
  });
  setup_checkpoints();
  // The outputs come last: a run refused above has written nothing.
  const bool leader = comm_->rank() == 0;
  try {
    log_ = std::make_unique<StepLog>(cfg_, leader, resumed_from_.empty() ? -1 : start_global_step_);
    report_micro_batch();
    if (leader && !cfg_.save_init_weights.empty()) save_safetensors(cfg_.save_init_weights, module_state(*task_.model));
  } catch (...) {
    if (ckpt_lock_) ckpt_lock_->discard();
    throw;
  }
}

Trainer::~Trainer() = default;

void Trainer::on_slot(SlotObserver f) { window_->on_slot(std::move(f)); }
void Trainer::on_loss(LossHook f) { window_->on_loss(std::move(f)); }
GradScaler& Trainer::scaler() { return window_->scaler(); }
torch::optim::Optimizer& Trainer::optimizer() { return window_->optimizer().base(); }
const std::vector<torch::Tensor>& Trainer::parameters() const { return window_->parameters(); }

std::vector<torch::Tensor> Trainer::state_tensors() const {
  std::vector<torch::Tensor> out;
  for (const auto& p : task_.model->parameters(true)) out.push_back(p);
  for (const auto& b : task_.model->buffers(true)) out.push_back(b);
  return out;
}

void Trainer::sync_initial_state() {
  // Rank 0's parameters and buffers become everyone's, in module order (the same on every rank).
  if (comm_->size() == 1) return;
  torch::NoGradGuard no_grad;
  for (auto& t : state_tensors()) {
    VDP_ASSERT(t.is_contiguous(), "parameters must be contiguous to broadcast in place");
    comm_->broadcast(t, 0);
  }
}

// One window, as the maths reads (train/window.h): this rank's micro-steps and the one reduction;
// the previous window's figures; the tail at the learning rate of the optimizer steps taken.
void Trainer::run_window(int64_t epoch, int64_t epoch_step) {
  StepRecord rec;
  rec.epoch = epoch;
  rec.step = global_step_;
  rec.epoch_step = epoch_step;
  rec.samples = plan_.step_samples(epoch_step);
  rec.micro_steps = plan_.micro_steps(epoch_step);
  window_->accumulate(rec, *loader_);
  settle();  // read while this window's work is queued (Note [window read one late])
  rec.lr = schedule_->at(optimizer_steps_);  // a skipped step leaves the schedule where it was
  window_->step(rec.lr);
  pending_ = std::move(rec);
  ++global_step_;
}

void Trainer::settle() {
  if (!pending_) return;
  StepRecord rec = std::move(*pending_);
  pending_.reset();
  const WindowFigures f = window_->figures();
  VDP_ASSERT(f.count > 0, "a step with no loss items (step ", rec.step, ")");
  rec.items = f.count;
  rec.loss = f.loss_sum / f.count;
  rec.scale = f.scale;
  rec.skipped = f.skipped;
  stop_now_ = stop_now_ || f.stop;
  if (rec.skipped) {
    VDP_CHECK_TRAINING(window_->scaler().enabled() || cfg_.nonfinite == NonFinite::Skip,
                       nonfinite_message(rec.step, f));
    window_->step_was_skipped();
    ++skipped_steps_;
  } else {
    rec.grad_norm = f.grad_norm;
    ++optimizer_steps_;
  }
  record_step(rec);
}

std::string Trainer::nonfinite_message(int64_t step, const WindowFigures& f) const {
  // A parameter's norm is finite iff every value of its gradient is (overflow of a huge norm aside).
  std::string name = "?";
  for (size_t i = 0; i < f.param_norms.size(); ++i)
    if (!std::isfinite(f.param_norms[i])) {
      name = window_->parameter_names()[i];
      break;
    }
  return detail::format("non-finite gradient at step ", step, ": first in parameter '", name,
                        "' (lower --lr, clip with --clip-grad-norm, use --grad-scaler on with --precision fp16, or "
                        "pass --nonfinite skip to skip such steps)");
}

EvalResult Trainer::evaluate() {
  EvalResult r;
  if (!task_.test) return r;
  const ComputeStreamScope compute(device_);
  comm_->set_phase("evaluation");
  torch::NoGradGuard no_grad;
  // Back in training mode however evaluation ends.
  struct TrainModeAfter {
    Net& model;
    ~TrainModeAfter() { model.train(); }
  } restore{*task_.model};
  task_.model->eval();
  // Rank r evaluates samples r, r+W, r+2W, ...; the sums are reduced once at the end.
  const int64_t n = task_.test->size(), w = comm_->size();
  const int64_t chunk = std::max<int64_t>(256, cfg_.micro_batch);
  torch::Tensor acc = torch::zeros({4}, torch::TensorOptions().dtype(torch::kFloat64).device(device_));
  std::vector<int64_t> ids;
  for (int64_t i = comm_->rank(); i < n; i += w) {
    ids.push_back(i);
    if (static_cast<int64_t>(ids.size()) == chunk || i + w >= n) {
      const Batch batch = task_.test->get(ids).to(device_);
      torch::Tensor out;
      {
        AutocastGuard autocast(device_, cfg_.precision);  // as in training (train/window.cpp)
        out = task_.model->forward(batch);
      }
      if (cfg_.precision != Precision::Fp32 && out.is_floating_point()) out = out.to(torch::kFloat32);
      const LossSum loss = task_.loss(out, batch);
      acc[0] += loss.sum.to(torch::kFloat64);
      acc[1] += loss.count.to(torch::kFloat64);
      if (task_.score) {
        const Score s = task_.score(out, batch);
        acc[2] += s.correct.to(torch::kFloat64);
        acc[3] += s.total.to(torch::kFloat64);
      }
      ids.clear();
    }
  }
  comm_->all_reduce_sum(acc);
  acc = acc.cpu();
  const double* a = acc.data_ptr<double>();
  r.items = a[1];
  if (a[1] > 0) r.loss = a[0] / a[1];
  if (task_.score && a[3] > 0) r.accuracy = a[2] / a[3];
  return r;
}

void Trainer::check_replicas(int64_t epoch) {
  // Ranks must hold identical parameters and buffers; compare rank 0's checksums bit for bit, then
  // agree on the verdict so that every rank fails together.
  if (comm_->size() == 1) return;
  comm_->set_phase(detail::format("replica check after epoch ", epoch + 1));
  const std::vector<double> mine = sums_and_squares(state_tensors());
  const std::vector<double> ref = comm_->broadcast_host(mine, 0);
  size_t first = mine.size();
  for (size_t i = 0; i < mine.size() && first == mine.size(); ++i)
    if (ref[i] != mine[i]) first = i;
  const std::vector<double> bad = comm_->all_reduce_host({first < mine.size() ? 1.0 : 0.0});
  VDP_ASSERT(bad[0] == 0, "parameters or buffers diverged across ranks after epoch ", epoch + 1, ": ", bad[0],
             " rank(s) differ from rank 0 (this rank: tensor ", first / 2, " of the state differs); a collective "
             "was skipped or reordered");
}

void Trainer::record_step(const StepRecord& rec) {
  epoch_loss_sum_ += rec.loss * rec.items, epoch_loss_items_ += rec.items;
  last_loss_ = rec.loss;
  if (step_observer_) step_observer_(rec);
  const int64_t done = rec.step + 1;
  const double eta = (total_steps_ - done) * (train_seconds_ / std::max<int64_t>(1, global_step_ - start_global_step_));
  log_->step(rec, done, plan_.steps_per_epoch(), seconds_since(start_), steady_rate(), eta, window_->scaler().enabled());
}

double Trainer::steady_rate() const {
  // Steady state: after the run's first window, which pays for start-up (CUDA/cuDNN initialisation,
  // first allocations, the loader's first batches).
  return train_seconds_ > warm_seconds_ && samples_done_ > warm_samples_
             ? (samples_done_ - warm_samples_) / (train_seconds_ - warm_seconds_)
             : samples_done_ / std::max(train_seconds_, 1e-9);
}

TrainResult Trainer::fit() {
  const ComputeStreamScope compute(device_);
  TrainResult result;
  result.allreduce_bytes_per_step = window_->reduction_bytes();
  result.wire_bytes_per_step = window_->wire_bytes();
  result.sharded = cfg_.shard_optimizer;
  task_.model->train();
  log_->start(global_step_, resumed_from_, comm_->size(), plan_.full_micro_steps(), total_steps_);
  LoaderOptions loader_opts;
  loader_opts.depth = cfg_.prefetch;
  loader_opts.skip_empty = !window_->collectives_in_forward();
  loader_ = std::make_unique<BatchLoader>(task_.train, plan_, comm_->rank(), global_step_, total_steps_, device_,
                                          loader_opts);
  start_ = Clock::now();
  train_seconds_ = 0, samples_done_ = 0, warm_seconds_ = -1, warm_samples_ = 0;
  run_epochs(result);
  finish_run(result);
  return result;
}

void Trainer::run_epochs(TrainResult& result) {
  // A resumed run continues at the step after its checkpoint: steps per epoch depend on (N, B,
  // drop_last) only, so the position is the same whatever W and m are now.
  const int64_t per_epoch = plan_.steps_per_epoch();
  const int64_t first_epoch = global_step_ / per_epoch, first_step = global_step_ % per_epoch;
  const int64_t run_start_step = global_step_;
  // --gpu-busy-steps N: the run's last N windows measured, never its first (device/busy.h). It
  // stops at an epoch's end (evaluation is not training time) or a stop, after the last read.
  std::unique_ptr<BusyMeter> busy;
  if (cfg_.gpu_busy_steps > 0) busy = std::make_unique<BusyMeter>(device_);
  const int64_t busy_start = std::max(run_start_step + 1, total_steps_ - cfg_.gpu_busy_steps);
  auto stop_busy = [&] {
    if (!busy || !busy->running()) return;
    const BusyResult b = busy->stop();
    result.gpu_busy = b.fraction();
    result.gpu_busy_windows = global_step_ - busy_start;
    log_->busy(b, busy_start, global_step_);
  };
  for (int64_t epoch = first_epoch; epoch < cfg_.epochs && global_step_ < total_steps_ && !stop_now_; ++epoch) {
    const auto epoch_start = Clock::now();
    const bool holds_first_window = global_step_ == run_start_step;
    double epoch_train_seconds = 0;
    int64_t epoch_samples = 0;
    epoch_loss_sum_ = 0, epoch_loss_items_ = 0;
    for (int64_t s = epoch == first_epoch ? first_step : 0; s < per_epoch && global_step_ < total_steps_; ++s) {
      if (busy && global_step_ == busy_start) busy->start();
      const auto t0 = Clock::now();
      run_window(epoch, s);
      const double dt = seconds_since(t0);
      train_seconds_ += dt, epoch_train_seconds += dt;
      const int64_t samples = plan_.step_samples(s);
      samples_done_ += samples, epoch_samples += samples;
      if (warm_seconds_ < 0) warm_seconds_ = train_seconds_, warm_samples_ = samples_done_;
      if (cfg_.checkpoint_every > 0 && global_step_ % cfg_.checkpoint_every == 0) save_checkpoint_now();
      // Every rank saw the same stop votes in a window's reduction: all leave here together.
      if (stop_now_) break;
    }
    // The epoch's last window, read now (Note [window read one late]).
    const auto t0 = Clock::now();
    settle();
    train_seconds_ += seconds_since(t0), epoch_train_seconds += seconds_since(t0);
    stop_busy();
    if (stop_now_) break;
    check_replicas(epoch);
    EvalResult ev;
    if (cfg_.eval) ev = evaluate();
    result.test = ev;
    log_->epoch(epoch, global_step_, epoch_loss_sum_ / std::max(epoch_loss_items_, 1e-300), ev, epoch_samples,
                epoch_loss_items_, epoch_train_seconds, seconds_since(epoch_start) - epoch_train_seconds,
                holds_first_window && global_step_ > run_start_step + 1 ? steady_rate() : 0);
  }
  settle();
  stop_busy();
}

void Trainer::finish_run(TrainResult& result) {
  result.last_loss = last_loss_;
  loader_.reset();
  window_->flat().check_views();
  if (!cfg_.checkpoint_dir.empty() && last_checkpoint_step_ != global_step_) save_checkpoint_now();
  if (stop_now_) {
    result.stopped = true;
    result.stop_signal = stop_signal_;
    log_->stopped(global_step_, stop_signal_, !cfg_.checkpoint_dir.empty());
  }
  result.steps = global_step_;
  result.train_seconds = train_seconds_;
  result.samples_per_second = samples_done_ / std::max(train_seconds_, 1e-9);
  result.steady_samples_per_second = steady_rate();
  result.graph_replays = window_->micro_step_replays();
  result.optimizer_state_bytes = optimizer_state_bytes(window_->optimizer().base());
  result.tail_replays = window_->tail_replays();
#ifdef VDP_WITH_CUDA
  if (device_.is_cuda())
    result.device_peak_bytes = c10::cuda::CUDACachingAllocator::getDeviceStats(device_.index())
                                   .allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)]
                                   .peak;
#endif
  std::tie(result.params_sum, result.params_l2) = parameter_checksum(*task_.model);
  const GradScaler& scaler = window_->scaler();
  log_->final(result, skipped_steps_, scaler.enabled() ? scaler.scale_value() : 1.0, comm_->size(), comm_->name(),
              plan_.full_micro_steps());
  if (comm_->rank() == 0 && !cfg_.save_weights.empty()) save_safetensors(cfg_.save_weights, module_state(*task_.model));
}

}  // namespace vdp
