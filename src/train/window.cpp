#include "vdp/train/window.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/autograd.h>

#include "vdp/amp/autocast.h"
#include "vdp/amp/grad_scaler.h"
#include "vdp/core/error.h"
#include "vdp/data/loader.h"
#include "vdp/device/compute_stream.h"
#include "vdp/device/execution.h"
#include "vdp/core/generator_state.h"
#include "vdp/device/memory.h"
#include "vdp/device/readback.h"
#include "vdp/grad/buffer_sync.h"
#include "vdp/grad/flat_grads.h"
#include "vdp/optim/exchange.h"
#include "vdp/nn/sync_batchnorm.h"
#include "vdp/optim/fused_optim.h"
#include "vdp/optim/optim.h"
#include "vdp/optim/shard.h"

namespace vdp {
namespace {

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

// The figures travel as one float64 tensor; this layout is the only place that knows the order.
enum FigureSlot : int64_t { kLossSum, kCount, kStopVotes, kFoundInf, kScale, kNorm, kParamNorms };

torch::Tensor pack_figures(const torch::Tensor& totals, const torch::Tensor& found_inf, const torch::Tensor& scale,
                           const torch::Tensor& norm, const torch::Tensor& norms) {
  std::vector<torch::Tensor> parts = {totals, found_inf.to(torch::kDouble), scale};  // kLossSum .. kScale
  if (norm.defined()) parts.insert(parts.end(), {norm.reshape({1}).to(torch::kDouble), norms.to(torch::kDouble)});
  return at::cat(parts);
}

WindowFigures unpack_figures(const torch::Tensor& packed, bool norms, bool scaled) {
  const double* v = packed.data_ptr<double>();
  WindowFigures f;
  f.loss_sum = v[kLossSum];
  f.count = v[kCount];
  f.stop = v[kStopVotes] > 0;
  f.skipped = v[kFoundInf] != 0;
  f.scale = scaled ? v[kScale] : 1.0;
  if (norms) {
    f.grad_norm = v[kNorm];
    f.param_norms.assign(v + kParamNorms, v + packed.numel());
  }
  return f;
}

}  // namespace

Window::Window(const Config& cfg, Task& task, std::shared_ptr<Communicator> comm, std::function<bool()> stop_vote)
    : cfg_(cfg),
      task_(task),
      comm_(std::move(comm)),
      device_(comm_->device()),
      stop_vote_(std::move(stop_vote)),
      rng_(device_) {
  // The reducer's hooks keep the gradient accumulators alive, with the stream current now.
  VDP_ASSERT(ComputeStreamScope::active(), "the window must be built on the trainer's compute stream "
             "(Note [one compute stream] in device/compute_stream.h)");
  Net& model = *task_.model;
  sync_layers_ = attach_communicator(model, comm_);
  if (cfg_.bn_momentum_unit == MomentumUnit::Window) window_momentum_ = std::make_unique<WindowMomentum>(model);
  expected_items_ = static_cast<double>(cfg_.micro_batch) * task_.items_per_sample;
  // Slots run in chunks of at most chunk_ samples (--chunk, per rank); BatchNorm would see them.
  chunk_ = cfg_.chunk > 0 ? std::min(cfg_.chunk, cfg_.micro_batch) : cfg_.micro_batch;
  for (const auto& m : model.modules(/*include_self=*/true))
    has_batch_norm_ = has_batch_norm_ || m->name().find("BatchNorm") != std::string::npos;
  VDP_CHECK(chunk_ == cfg_.micro_batch || !has_batch_norm_, "invalid value for --chunk: ", cfg_.chunk,
            " (the model has BatchNorm layers, whose statistics would see chunks of ", chunk_, " samples instead of "
            "micro-batches of ", cfg_.micro_batch, "; use --norm group or none, or leave --chunk out)");
  for (const auto& p : model.named_parameters(true)) {
    if (!p.value().requires_grad()) continue;
    params_.push_back(p.value());
    param_names_.push_back(p.key());
  }
  // Local BatchNorm statistics are averaged over ranks in the window's reduction (Note [buffer
  // averaging] in grad/buffer_sync.h).
  buffer_sync_ = std::make_unique<BufferSync>(comm_->size() > 1 ? local_norm_buffers(model)
                                                                : std::vector<torch::Tensor>{});
  flat_ = std::make_unique<FlatGrads>(params_, param_names_, buffer_sync_->numel(),
                                      cfg_.shard_optimizer ? shard_multiple(comm_->size()) : 1);
  buffer_sync_->bind(flat_->extra());
  // SyncBatchNorm communicates inside backward: its collectives and bucket launches from hooks
  // would interleave by timing, so such models reduce after backward. A CUDA graph replays the whole
  // micro-step, hooks included: such runs reduce after backward too. The sharded form reduces after
  // the last backward (optim/shard.h).
  exchange_ = cfg_.shard_optimizer
                  ? make_sharded_exchange(*flat_, params_, comm_)
                  : make_replicated_exchange(*flat_, params_, comm_, static_cast<int64_t>(cfg_.bucket_mb * 1e6),
                                             cfg_.overlap && sync_layers_ == 0 && !cfg_.cuda_graphs);
  VDP_CHECK(!cfg_.cuda_graphs || sync_layers_ == 0, "--cuda-graphs cannot capture SyncBatchNorm (its collectives "
            "run inside forward and backward): leave out --cuda-graphs or use another norm");
  micro_steps_ = make_micro_step_runner(cfg_.cuda_graphs, device_, chunk_);
  tails_ = make_tail_runner(cfg_.cuda_graphs, device_);

  GradScalerOptions so;
  so.enabled = cfg_.grad_scaler == ScalerMode::On ||
               (cfg_.grad_scaler == ScalerMode::Auto && cfg_.precision == Precision::Fp16);
  so.init_scale = cfg_.scaler_init;
  so.growth_factor = cfg_.scaler_growth_factor;
  so.backoff_factor = cfg_.scaler_backoff_factor;
  so.growth_interval = cfg_.scaler_growth_interval;
  scaler_ = std::make_unique<GradScaler>(so, device_);
  // The figures stay on the device until figures() (Note [window read one late]); the per-parameter
  // norms also name the first non-finite gradient when such a step is an error.
  wants_norms_ = !cfg_.metrics.empty() || cfg_.log_every > 0 || cfg_.clip_grad_norm > 0 ||
                 (!so.enabled && cfg_.nonfinite != NonFinite::Skip);
  readback_ = std::make_unique<HostReadback>(device_);
  optimizer_ = make_optimizer(cfg_, exchange_->stepped());
  if (cfg_.cuda_graphs) {
    // A replayed tail reads the learning rate from the device. That rate is float32, exact for
    // parameters of 32 bits or fewer (their kernels compute in float32) but not for float64 ones:
    // their optimizer step runs after the replay, with the rate from the host.
    bool f64 = false;
    for (const auto& p : params_) f64 = f64 || p.scalar_type() == torch::kFloat64;
    if (!f64) {
      lr_ = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(device_));
      optimizer_->lr_from(lr_);
    }
  }
}

Window::~Window() = default;

void Window::on_loss(LossHook f) {
  VDP_CHECK(!f || !cfg_.cuda_graphs, "a loss hook runs on the host at each micro-step, which a replayed CUDA graph "
            "never does (it would run once, at the capture): leave out --cuda-graphs to use one");
  loss_hook_ = std::move(f);
}

// Note [window read one late]: nothing in a window waits for the device. The window's figures (loss
// sum, item count, stop votes, inf flag, gradient norm, loss scale) stay on the device, and its tail
// runs on them there: normalization and unscaling, clipping, the optimizer step (which the fused
// kernels themselves skip when the inf flag is set: optim/fused_optim.h) and the scaler's update.
// The figures travel to pinned host memory behind an event (device/readback.h), and the host
// collects them one window later (Trainer::settle): after the next window's micro-steps and
// reduction are enqueued, before its tail. So the device has the next window queued while the host
// reads, and the host still knows before each optimizer step whether the previous one was taken (the
// learning rate follows optimizer steps taken), and every step's exact figures for the log and the
// metrics. A stop vote takes effect after the window following the one that carried it, on every
// rank alike. Checkpoints, epoch ends and the run's end settle at once.
void Window::accumulate(const StepRecord& rec, BatchLoader& loader) {
  if (window_momentum_) window_momentum_->set_micro_steps(rec.micro_steps);
  comm_->set_phase(detail::format("step ", rec.step, " (micro-steps)"));
  begin();
  std::vector<std::vector<int64_t>> slots;  // this window's slots so far (a redo reads them again)
  for (int64_t k = 0; k < rec.micro_steps; ++k) {
    LoadedSlot slot = loader.next();  // this rank's slot (epoch, step, k), already on the device
    VDP_ASSERT(slot.epoch == rec.epoch && slot.epoch_step == rec.epoch_step && slot.k == k, "the loader is out of step");
    if (slot_observer_) slot_observer_(rec.epoch, rec.epoch_step, k, slot.ids);
    slots.push_back(std::move(slot.ids));
    try {
      run_slot(rec, k, slot.batch);
    } catch (const c10::OutOfMemoryError& e) {
      redo(rec, slots, e);  // this rank alone, in smaller chunks, from a clean buffer
    }
  }
  comm_->set_phase(detail::format("step ", rec.step, " (gradient reduction)"));
  exchange_->finish();
  buffer_sync_->apply(comm_->size());
}

void Window::begin() {
  flat_->begin_window();
  rng_.capture();
}

// One slot in chunks of at most chunk_ rows. The window's last chunk stages the tail and arms the
// reducer: its backward starts the buckets as their gradients complete.
void Window::run_slot(const StepRecord& rec, int64_t k, const Batch& batch) {
  const bool last = k == rec.micro_steps - 1;
  const std::function<void()> staging = [this] { stage(); };
  // An empty slot contributes nothing; it runs (on 0 rows) only when forward holds collectives.
  // Armed all the same: every rank's buckets then go through the same (non-blocking) path.
  if (batch.size() == 0 && !collectives_in_forward()) {
    if (last) exchange_->arm(), staging();
    return;
  }
  const int64_t n = batch.size();
  for (int64_t at = 0; at < n || at == 0; at += chunk_) {
    const bool final_chunk = last && at + chunk_ >= n;
    if (final_chunk) exchange_->arm();
    micro_steps_->run(batch.rows(at, std::min(chunk_, n - at)), final_chunk ? staging : nullptr,
                      [&](const Batch& b, const std::function<void()>& before_backward) {
                        micro_step(rec, k, b, before_backward);
                      });
  }
}

// Note [out-of-memory redo]: a micro-step that ran out of memory may have added part of its
// gradients to the flat buffer (a backward that failed half-way). So the window restarts on this
// rank from a clean buffer, with the generators as they were at its start, and runs its slots so
// far again in chunks half the size, read again from the dataset by their ids; the smaller size
// stays for later windows. Sums and the global count make the step's gradient independent of the
// chunking, and the window's only collective comes after its last backward, so no other rank
// notices. Not recoverable: a chunk of one sample, BatchNorm (its statistics would see the chunk),
// and a backward that had already started a bucket's reduction (--overlap=false avoids that).
void Window::redo(const StepRecord& rec, const std::vector<std::vector<int64_t>>& slots,
                  const c10::OutOfMemoryError& first) {
  std::string why = first.what_without_backtrace();
  for (;;) {
    why = why.substr(0, why.find('\n'));
    VDP_CHECK_IO(exchange_->disarm(), "out of memory in step ", rec.step, " after a gradient bucket's reduction "
                 "had started (", why, "); vdp can redo a window in smaller chunks when its reduction starts after "
                 "backward: add --overlap=false, or lower --micro-batch");
    VDP_CHECK_IO(!has_batch_norm_, "out of memory in step ", rec.step, " (", why, "); vdp cannot redo it in "
                 "smaller chunks because BatchNorm's statistics would see the chunks: use --norm group or none, or "
                 "lower --micro-batch");
    VDP_CHECK_IO(chunk_ > 1, "out of memory in step ", rec.step, " even with chunks of 1 sample (", why,
                 "): the model does not fit this device at all");
    const int64_t was = chunk_;
    chunk_ = (chunk_ + 1) / 2;
    release_cached_memory(device_);
    if (memory_observer_) memory_observer_(rec.step, was, chunk_, why);
    try {
      flat_->begin_window();
      rng_.restore();
      for (size_t j = 0; j < slots.size(); ++j)
        run_slot(rec, static_cast<int64_t>(j), task_.train->get(slots[j]).to(device_));
      return;
    } catch (const c10::OutOfMemoryError& e) {
      why = e.what_without_backtrace();
    }
  }
}

void Window::micro_step(const StepRecord& rec, int64_t k, const Batch& batch,
                        const std::function<void()>& before_backward) {
  torch::Tensor out;
  {
    AutocastGuard autocast(device_, cfg_.precision);
    out = task_.model->forward(batch);
  }
  // The loss is computed in float32 from reduced-precision outputs, as torch.autocast would.
  if (cfg_.precision != Precision::Fp32 && out.is_floating_point()) out = out.to(torch::kFloat32);
  LossSum loss = task_.loss(out, batch);
  if (loss_hook_) loss_hook_(rec, k, batch, loss);
  flat_->add_loss(loss);
  if (before_backward) before_backward();
  // Backward of c·sum (times the loss scale); it frees the micro-step's graph, so memory does not
  // grow with K.
  torch::Tensor objective = loss.sum * (1.0 / expected_items_);
  if (scaler_->enabled()) objective = objective * scaler_->scale().squeeze();
  objective.backward();
}

void Window::stage() {
  // After the window's last forward (which updated the running statistics), before the reduction.
  flat_->stage_loss();
  flat_->set_stop(stop_vote_ && stop_vote_());
  buffer_sync_->stage();
}

void Window::step(double lr) {
  optimizer_->set_lr(lr);
  optimizer_->prepare();  // the host half (Note [a step in two halves] in optim/fused_optim.h)
  readback_->start(tails_->run(*optimizer_, [this] { return tail(); }));
  exchange_->gather();
}

torch::Tensor Window::tail() {
  // Device work only, from tensors that outlive the window: a graph captures and replays it.
  const torch::Tensor totals = flat_->totals_tensor();              // [loss sum, count, stop votes]
  const torch::Tensor scale = scaler_->scale().to(torch::kDouble);  // a copy: update() changes it
  // One pass over the gradients this rank steps: unscale, normalize by the real global count, and
  // look for inf/NaN; agree() makes the flag (and the norms) the same on every rank. 1 / (c · count)
  // written as E / count with c = 1/E: exactly 1 when the window held the expected items.
  const torch::Tensor found_inf = scaler_->unscale(exchange_->stepped_grads(), expected_items_ / totals[1]);
  // Per-parameter norms, then their norm: PyTorch's order, so clipping matches it bit for bit.
  const torch::Tensor norms = exchange_->agree(found_inf, wants_norms_);
  torch::Tensor norm;
  if (wants_norms_) {
    norm = norm_of_norms(norms);
    if (cfg_.clip_grad_norm > 0) clip_to_norm(exchange_->stepped_grads(), norm, cfg_.clip_grad_norm);
  }
  // Parameters and optimizer state stay as they were when the flag is set (the kernels skip).
  optimizer_->skip_if(found_inf);
  scaler_->update();
  return pack_figures(totals, found_inf, scale, norm, norms);
}

WindowFigures Window::figures() { return unpack_figures(readback_->get(), wants_norms_, scaler_->enabled()); }

void Window::step_was_skipped() { optimizer_->step_was_skipped(); }

NamedTensors Window::optimizer_state() { return exchange_->optimizer_state(optimizer_->base()); }
void Window::load_optimizer_state(const NamedTensors& state, const std::string& source) {
  exchange_->load_optimizer_state(optimizer_->base(), state, source);
}

int64_t Window::reduction_bytes() const { return exchange_->reduction_bytes(); }
int64_t Window::wire_bytes() const { return exchange_->wire_bytes(); }
int64_t Window::micro_step_replays() const { return micro_steps_->replays(); }
int64_t Window::tail_replays() const { return tails_->replays(); }

}  // namespace vdp
