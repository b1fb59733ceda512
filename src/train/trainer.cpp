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
#include "vdp/data/loader.h"
#include "vdp/data/resident.h"
#include "vdp/grad/buffer_sync.h"
#include "vdp/grad/flat_grads.h"
#include "vdp/grad/reducer.h"
#include "vdp/nn/sync_batchnorm.h"
#include "vdp/train/determinism.h"
#include "vdp/train/optim.h"
#include "vdp/train/preemption.h"
#include "vdp/train/rank_agreement.h"
#include "vdp/train/readback.h"
#include "vdp/train/busy.h"
#include "vdp/train/cuda_graph.h"
#include "vdp/train/fused_optim.h"
#include "vdp/train/step_log.h"

namespace vdp {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Buffers of the model's normalization layers that keep per-rank statistics (everything but
// SyncBatchNorm, whose statistics are global already): Note [buffer averaging].
std::vector<torch::Tensor> local_norm_buffers(torch::nn::Module& model) {
  std::vector<torch::Tensor> out;
  for (const auto& m : model.modules(/*include_self=*/true)) {
    if (dynamic_cast<SyncBatchNormImpl*>(m.get())) continue;
    for (const auto& b : m->buffers(/*recurse=*/false)) out.push_back(b);
  }
  return out;
}

}  // namespace

std::pair<double, double> parameter_checksum(const torch::nn::Module& module) {
  double sum = 0, sq = 0;
  for (const auto& p : module.parameters()) {
    auto d = p.detach().to(torch::kFloat64);
    sum += d.sum().item<double>();
    sq += d.pow(2).sum().item<double>();
  }
  return {sum, std::sqrt(sq)};
}

Trainer::Trainer(Config cfg, Task task, std::shared_ptr<Communicator> comm)
    : cfg_(std::move(cfg)),
      task_(std::move(task)),
      comm_(std::move(comm)),
      device_(comm_->device()),
      plan_(PlanParams{task_.train->size(), cfg_.global_batch, comm_->size(), cfg_.micro_batch, cfg_.seed,
                       cfg_.drop_last, cfg_.shuffle}) {
  const int64_t per_epoch = plan_.steps_per_epoch();
  total_steps_ = per_epoch * cfg_.epochs;
  if (cfg_.max_steps > 0) total_steps_ = std::min(total_steps_, cfg_.max_steps);
  expected_items_ = static_cast<double>(cfg_.micro_batch) * task_.items_per_sample;
  hint_ = 1.0 / expected_items_;

  if (cfg_.deterministic) enable_determinism();
  comm_->set_phase("start-up: checking that every rank has the same options and data");
  check_ranks_agree(cfg_, task_, *comm_);
  comm_->set_phase("start-up");
  VDP_CHECK(cfg_.gpu_busy_steps == 0 || device_.is_cuda(), "--gpu-busy-steps measures a GPU, but this run is on ",
            device_, ": leave it out or train with --device cuda");
  // The training set on the GPU, when asked and when it fits (refused with one line otherwise).
  if (cfg_.data_on_device && device_.is_cuda()) task_.train = std::make_shared<ResidentDataset>(task_.train, device_);
  task_.model->to(device_);
  sync_layers_ = attach_communicator(*task_.model, comm_);
  if (cfg_.bn_momentum_unit == MomentumUnit::Window) window_momentum_ = std::make_unique<WindowMomentum>(*task_.model);
  if (!cfg_.init_weights.empty()) load_module_state(*task_.model, cfg_.init_weights);
  sync_initial_state();

  for (const auto& p : task_.model->named_parameters(true)) {
    if (!p.value().requires_grad()) continue;
    params_.push_back(p.value());
    param_names_.push_back(p.key());
  }
  // Local BatchNorm statistics are averaged over ranks in the window's reduction (Note [buffer
  // averaging] in grad/buffer_sync.h).
  buffer_sync_ = std::make_unique<BufferSync>(comm_->size() > 1 ? local_norm_buffers(*task_.model)
                                                                : std::vector<torch::Tensor>{});
  flat_ = std::make_unique<FlatGrads>(params_, param_names_, buffer_sync_->numel());
  buffer_sync_->bind(flat_->extra());
  // SyncBatchNorm communicates inside backward: its collectives and bucket launches from hooks
  // would interleave by timing, so such models reduce after backward.
  // A CUDA graph replays the whole micro-step, hooks included: such runs reduce after backward too.
  reducer_ = std::make_unique<WindowReducer>(*flat_, params_, comm_, static_cast<int64_t>(cfg_.bucket_mb * 1e6),
                                             cfg_.overlap && sync_layers_ == 0 && !cfg_.cuda_graphs);
  if (cfg_.cuda_graphs) {
    VDP_CHECK(sync_layers_ == 0, "--cuda-graphs cannot capture SyncBatchNorm (its collectives run inside forward "
              "and backward): leave out --cuda-graphs or use another norm");
    graph_ = std::make_unique<MicroStepGraph>(device_, cfg_.micro_batch);
    tail_graph_ = std::make_unique<TailGraph>(device_);
  }
  GradScalerOptions so;
  so.enabled = cfg_.grad_scaler == ScalerMode::On ||
               (cfg_.grad_scaler == ScalerMode::Auto && cfg_.precision == Precision::Fp16);
  so.init_scale = cfg_.scaler_init;
  so.growth_factor = cfg_.scaler_growth_factor;
  so.backoff_factor = cfg_.scaler_backoff_factor;
  so.growth_interval = cfg_.scaler_growth_interval;
  scaler_ = std::make_unique<GradScaler>(so, device_);
  schedule_ = std::make_unique<LrSchedule>(cfg_, total_steps_);
  wants_grad_norm_ = !cfg_.metrics.empty() || cfg_.log_every > 0;
  for (const auto& p : params_) param_grads_.push_back(p.grad());
  // The window's figures stay on the device until settle() (Note [window read one late]); the
  // per-parameter norms also name the first non-finite gradient when such a step is an error.
  wants_norms_ = wants_grad_norm_ || cfg_.clip_grad_norm > 0 || (!so.enabled && cfg_.nonfinite != NonFinite::Skip);
  readback_ = std::make_unique<HostReadback>(device_);
  optimizer_ = make_optimizer(cfg_, params_);
  device_skip_ = dynamic_cast<DeviceSkip*>(optimizer_.get());
  VDP_ASSERT(device_skip_ != nullptr, "the optimizer cannot skip a step on the device");
  if (tail_graph_) {
    // A replay reads the learning rate from the device. That rate is float32, exact for parameters
    // of 32 bits or fewer (their kernels compute in float32) but not for float64 ones: their
    // optimizer step runs after the replay, with the rate from the host.
    bool f64 = false;
    for (const auto& p : params_) f64 = f64 || p.scalar_type() == torch::kFloat64;
    if (!f64) {
      lr_ = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(device_));
      device_skip_->lr_from(lr_);
    }
  }
  setup_checkpoints();
  // The outputs come last: a run refused above has written nothing.
  const bool leader = comm_->rank() == 0;
  try {
    log_ = std::make_unique<StepLog>(cfg_, leader, resumed_from_.empty() ? -1 : start_global_step_);
    if (leader && !cfg_.save_init_weights.empty()) save_safetensors(cfg_.save_init_weights, module_state(*task_.model));
  } catch (...) {
    if (ckpt_lock_) ckpt_lock_->discard();
    throw;
  }
}

Trainer::~Trainer() = default;

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

// Note [window read one late]: nothing in a window waits for the device. The window's figures (loss
// sum, item count, stop votes, inf flag, gradient norm, loss scale) stay on the device, and its tail
// runs on them there: normalization and unscaling, clipping, the optimizer step (which the fused
// kernels themselves skip when the inf flag is set: train/fused_optim.h) and the scaler's update.
// The figures travel to pinned host memory behind an event (train/readback.h), and the host collects
// them one window later, in settle(): after the next window's micro-steps and reduction are
// enqueued, before its tail. So the device has the next window queued while the host reads, and the
// host still knows before each optimizer step whether the previous one was taken (the learning rate
// follows optimizer steps taken), and every step's exact figures for the log and the metrics. A stop
// vote takes effect after the window following the one that carried it, on every rank alike.
// Checkpoints, epoch ends and the run's end settle at once.
void Trainer::run_window(int64_t epoch, int64_t epoch_step) {
  StepRecord rec;
  rec.epoch = epoch;
  rec.step = global_step_;
  rec.epoch_step = epoch_step;
  rec.samples = plan_.step_samples(epoch_step);
  rec.micro_steps = plan_.micro_steps(epoch_step);
  if (window_momentum_) window_momentum_->set_micro_steps(rec.micro_steps);
  comm_->set_phase(detail::format("step ", global_step_, " (micro-steps)"));

  // Each parameter's first gradient of the window is written into the flat buffer, not added to a
  // zeroed one (Note [first gradient overwrites] in grad/flat_grads.h); graph replays add to zeros.
  flat_->begin_window(/*overwrite=*/!graph_);
  for (int64_t k = 0; k < rec.micro_steps; ++k) {
    const bool last = k == rec.micro_steps - 1;
    // The last micro-step's backward starts the buckets' reductions as their gradients complete.
    if (last) reducer_->arm();
    // Slot (epoch, step, k) of this rank, gathered ahead and already on the device (data/loader.h).
    const LoadedSlot slot = loader_->next();
    VDP_ASSERT(slot.epoch == epoch && slot.epoch_step == epoch_step && slot.k == k, "the loader is out of step");
    if (slot_observer_) slot_observer_(epoch, epoch_step, k, slot.ids);
    // An empty slot contributes nothing. Without collectives inside forward/backward the micro-step
    // is skipped; with SyncBatchNorm it runs on 0 rows so every rank issues the same collectives.
    if (slot.ids.empty() && sync_layers_ == 0) {
      if (last) stage_window_tail();
      continue;
    }
    // Forward, loss, the loss sum and count into the buffer's tail, backward of c·sum (times the
    // loss scale; it frees the micro-step's graph, so memory does not grow with K).
    auto micro_step = [&](const Batch& batch) {
      torch::Tensor out;
      {
        AutocastGuard autocast(device_, cfg_.precision);
        out = task_.model->forward(batch);
      }
      // The loss is computed in float32 from reduced-precision outputs, as torch.autocast would.
      if (cfg_.precision != Precision::Fp32 && out.is_floating_point()) out = out.to(torch::kFloat32);
      LossSum loss = task_.loss(out, batch);
      if (loss_hook_) loss_hook_(rec, k, loss);
      flat_->add_loss(loss);
      // The stop vote and the buffers join the tail before backward: the last bucket, which
      // carries them, may start during it (never with CUDA graphs: no overlap there).
      if (last && !graph_) stage_window_tail();
      torch::Tensor objective = loss.sum * hint_;
      if (scaler_->enabled()) objective = objective * scaler_->scale().squeeze();
      objective.backward();
    };
    if (graph_) graph_->run(slot.batch, micro_step);  // replays its capture for the steady shape
    else micro_step(slot.batch);
    if (last && graph_) stage_window_tail();
  }

  // The window's one reduction (in buckets): gradients, loss sum, count, stop votes, buffers.
  comm_->set_phase(detail::format("step ", global_step_, " (gradient reduction)"));
  flat_->end_backward();  // before the buckets the hooks did not start
  reducer_->finish();
  buffer_sync_->apply(comm_->size());
  // The previous window's figures, read while this window's work is queued.
  settle();
  finish_window(std::move(rec));
}

void Trainer::finish_window(StepRecord rec) {
  // The schedule follows optimizer steps taken: a skipped step (inf/NaN) leaves it where it was.
  rec.lr = schedule_->at(optimizer_steps_);
  set_learning_rate(*optimizer_, rec.lr);
  if (lr_.defined()) lr_.fill_(rec.lr);  // read by the kernels when they run (a replay included)
  // The host half of the optimizer step: counts, new state, the kernels' lists (Note [a step in two
  // halves] in train/fused_optim.h). The device half runs in the tail, or after it.
  device_skip_->prepare();
  const torch::Tensor figures =
      tail_graph_ ? tail_graph_->run(device_skip_->identity(), [this] { return window_tail(); }) : window_tail();
  if (!launch_in_tail()) device_skip_->launch();
  readback_->start(figures);
  pending_ = std::move(rec);
  ++global_step_;
}

torch::Tensor Trainer::window_tail() {
  // Device work only, from tensors that outlive the window: --cuda-graphs captures and replays it
  // (train/cuda_graph.h).
  const torch::Tensor totals = flat_->totals_tensor();  // [loss sum, count, stop votes]
  const torch::Tensor scale = scaler_->scale().to(torch::kDouble);  // a copy: update() changes it
  // One pass: unscale, normalize by the real global count, and look for inf/NaN. The gradients are
  // identical on every rank after the reduction, so every rank decides the same. 1 / (c · count)
  // written as E / count with c = 1/E: exactly 1 when the window held the expected items.
  const torch::Tensor factor = expected_items_ / totals[1];
  // On the CPU a host read costs nothing: a factor of exactly 1 without a scaler (full slots at
  // K = 1) needs no pass over the gradients, only the read-only one of the norms below.
  const bool identity = device_.is_cpu() && !scaler_->enabled() && factor.item<double>() == 1.0;
  torch::Tensor found_inf = identity ? torch::Tensor() : scaler_->unscale(flat_->grads(), factor);
  torch::Tensor norms, norm;
  if (wants_norms_ || identity) {
    // Per-parameter norms, then their norm: PyTorch's order, so clipping matches it bit for bit.
    norms = grad_norms(param_grads_);
    norm = norm_of_norms(norms);
    // A norm is finite iff every value is (overflow of a huge norm aside).
    if (identity) found_inf = at::isfinite(norm).logical_not().to(torch::kFloat32).reshape({1});
    if (cfg_.clip_grad_norm > 0) clip_to_norm(param_grads_, norm, cfg_.clip_grad_norm);
  }
  std::vector<torch::Tensor> figures = {totals, found_inf.to(torch::kDouble), scale};
  if (wants_norms_) {
    figures.push_back(norm.reshape({1}).to(torch::kDouble));
    figures.push_back(norms.to(torch::kDouble));
  }
  // Parameters and optimizer state stay as they were when the flag is set (the kernels skip).
  device_skip_->skip_if(found_inf);
  if (launch_in_tail()) device_skip_->launch();
  scaler_->update();
  return at::cat(figures);
}

void Trainer::settle() {
  if (!pending_) return;
  StepRecord rec = std::move(*pending_);
  pending_.reset();
  const torch::Tensor figures = readback_->get();
  const double* v = figures.data_ptr<double>();  // [loss sum, count, stop votes, inf flag, scale, norm, norms...]
  VDP_ASSERT(v[1] > 0, "a step with no loss items (step ", rec.step, ")");
  rec.items = v[1];
  rec.loss = v[0] / v[1];
  stop_now_ = stop_now_ || v[2] > 0;
  rec.skipped = v[3] != 0;
  rec.scale = scaler_->enabled() ? v[4] : 1.0;
  if (rec.skipped) {
    VDP_CHECK_TRAINING(scaler_->enabled() || cfg_.nonfinite == NonFinite::Skip,
                       nonfinite_message(rec.step, wants_norms_ ? v + 6 : nullptr));
    device_skip_->step_was_skipped();
    ++skipped_steps_;
  } else {
    if (wants_norms_) rec.grad_norm = v[5];
    ++optimizer_steps_;
  }
  record_step(rec);
}

void Trainer::stage_window_tail() {
  // After the window's last forward (which updated the running statistics), before the reduction.
  flat_->stage_loss();
  flat_->set_stop(stop_requested());
  buffer_sync_->stage();
}

std::string Trainer::nonfinite_message(int64_t step, const double* norms) const {
  // A parameter's norm is finite iff every value of its gradient is (overflow of a huge norm aside).
  std::string name = "?";
  for (size_t i = 0; norms && i < params_.size(); ++i)
    if (!std::isfinite(norms[i])) {
      name = param_names_[i];
      break;
    }
  return detail::format("non-finite gradient at step ", step, ": first in parameter '", name,
                        "' (lower --lr, clip with --clip-grad-norm, use --grad-scaler on with --precision fp16, or "
                        "pass --nonfinite skip to skip such steps)");
}

EvalResult Trainer::evaluate() {
  EvalResult r;
  if (!task_.test) return r;
  comm_->set_phase("evaluation");
  torch::NoGradGuard no_grad;
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
      const torch::Tensor out = task_.model->forward(batch);
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
  task_.model->train();
  return r;
}

void Trainer::check_replicas(int64_t epoch) {
  // Ranks must hold identical parameters and buffers; compare rank 0's checksums bit for bit, then
  // agree on the verdict so that every rank fails together.
  if (comm_->size() == 1) return;
  comm_->set_phase(detail::format("replica check after epoch ", epoch + 1));
  std::vector<double> mine;
  for (const auto& t : state_tensors()) {
    const torch::Tensor d = t.detach().to(torch::kFloat64);
    mine.push_back(d.sum().item<double>());
    mine.push_back(d.pow(2).sum().item<double>());
  }
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
  log_->step(rec, done, plan_.steps_per_epoch(), seconds_since(start_), steady_rate(), eta, scaler_->enabled());
}

double Trainer::steady_rate() const {
  // Steady state: after the run's first window, which pays for start-up (CUDA/cuDNN initialisation,
  // first allocations, the loader's first batches).
  return train_seconds_ > warm_seconds_ && samples_done_ > warm_samples_
             ? (samples_done_ - warm_samples_) / (train_seconds_ - warm_seconds_)
             : samples_done_ / std::max(train_seconds_, 1e-9);
}

TrainResult Trainer::fit() {
  TrainResult result;
  result.allreduce_bytes_per_step = reducer_->bytes();
  task_.model->train();
  const int64_t per_epoch = plan_.steps_per_epoch();
  log_->start(global_step_, resumed_from_, comm_->size(), plan_.full_micro_steps(), total_steps_);
  LoaderOptions loader_opts;
  loader_opts.depth = cfg_.prefetch;
  loader_opts.skip_empty = sync_layers_ == 0;
  loader_ = std::make_unique<BatchLoader>(task_.train, plan_, comm_->rank(), global_step_, total_steps_, device_,
                                          loader_opts);
  start_ = Clock::now();
  train_seconds_ = 0, samples_done_ = 0, warm_seconds_ = -1, warm_samples_ = 0;

  // A resumed run continues at the step after its checkpoint: steps per epoch depend on (N, B,
  // drop_last) only, so the position is the same whatever W and m are now.
  const int64_t first_epoch = global_step_ / per_epoch, first_step = global_step_ % per_epoch;
  const int64_t run_start_step = global_step_;
  // --gpu-busy-steps N: the run's last N windows measured, never its first (train/busy.h).
  std::unique_ptr<BusyMeter> busy;
  if (cfg_.gpu_busy_steps > 0) busy = std::make_unique<BusyMeter>(device_);
  const int64_t busy_start = std::max(run_start_step + 1, total_steps_ - cfg_.gpu_busy_steps);
  auto stop_busy = [&] {
    settle();
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
    if (busy && busy->running()) stop_busy();  // evaluation is not training time
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
  if (busy && busy->running()) stop_busy();  // a stop signal
  result.last_loss = last_loss_;
  loader_.reset();
  flat_->check_views();
  if (!cfg_.checkpoint_dir.empty() && last_checkpoint_step_ != global_step_) save_checkpoint_now();
  if (stop_now_) {
    result.stopped = true;
    result.stop_signal = stop_signal();
    log_->stopped(global_step_, signal_name(result.stop_signal), !cfg_.checkpoint_dir.empty());
  }
  result.steps = global_step_;
  result.train_seconds = train_seconds_;
  result.samples_per_second = samples_done_ / std::max(train_seconds_, 1e-9);
  result.steady_samples_per_second = steady_rate();
  if (graph_) result.graph_replays = graph_->replays();
  if (tail_graph_) result.tail_replays = tail_graph_->replays();
#ifdef VDP_WITH_CUDA
  if (device_.is_cuda())
    result.device_peak_bytes = c10::cuda::CUDACachingAllocator::getDeviceStats(device_.index())
                                   .allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)]
                                   .peak;
#endif
  std::tie(result.params_sum, result.params_l2) = parameter_checksum(*task_.model);
  log_->final(result, skipped_steps_, scaler_->enabled() ? scaler_->scale_value() : 1.0, comm_->size(), comm_->name(),
              plan_.full_micro_steps());
  if (comm_->rank() == 0 && !cfg_.save_weights.empty()) save_safetensors(cfg_.save_weights, module_state(*task_.model));
  return result;
}

}  // namespace vdp
