#include "vdp/report/step_log.h"

#include "vdp/core/signal_name.h"
#include "vdp/dist/mpi_env.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace vdp {
namespace {

nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

}  // namespace

StepLog::StepLog(const Config& cfg, bool leader, int64_t resume_step)
    : cfg_(cfg), leader_(leader), chatty_(leader && !cfg.quiet), progress_(leader && !cfg.quiet) {
  if (!leader_) return;
  if (!cfg.metrics.empty()) metrics_ = std::make_unique<MetricsWriter>(cfg.metrics, resume_step);
  if (!cfg.tensorboard_dir.empty()) tensorboard_ = std::make_unique<TensorBoardWriter>(cfg.tensorboard_dir);
}

void StepLog::start(int64_t step, const std::string& resumed_from, int world_size, int64_t micro_steps,
                    int64_t total_steps) {
  if (metrics_)
    metrics_->write({{"event", "start"}, {"step", step}, {"resumed_from", resumed_from}, {"world_size", world_size},
                     {"global_batch", cfg_.global_batch}, {"micro_batch", cfg_.micro_batch},
                     {"micro_steps_per_window", micro_steps}, {"total_steps", total_steps}});
}

void StepLog::step(const StepRecord& rec, int64_t global_step, int64_t per_epoch, double elapsed_s, double rate,
                   double eta_s, bool scaler_enabled) {
  if (!leader_) return;
  if (metrics_)
    metrics_->write({{"event", "step"}, {"epoch", rec.epoch}, {"step", rec.step}, {"epoch_step", rec.epoch_step},
                     {"samples", rec.samples}, {"micro_steps", rec.micro_steps}, {"items", rec.items},
                     {"loss", num(rec.loss)}, {"lr", rec.lr}, {"grad_norm", num(rec.grad_norm)},
                     {"scale", rec.scale}, {"skipped", rec.skipped}, {"time", elapsed_s}, {"samples_per_s", rate}});
  if (tensorboard_) {
    tensorboard_->add_scalar("train/loss", rec.step, rec.loss);
    tensorboard_->add_scalar("train/lr", rec.step, rec.lr);
    tensorboard_->add_scalar("train/samples_per_s", rec.step, rate);
    if (std::isfinite(rec.grad_norm)) tensorboard_->add_scalar("train/grad_norm", rec.step, rec.grad_norm);
    if (scaler_enabled) tensorboard_->add_scalar("train/loss_scale", rec.step, rec.scale);
  }
  progress_.update(rec.epoch + 1, cfg_.epochs, rec.epoch_step + 1, per_epoch, rec.loss, rate, eta_s);
  if (chatty_ && cfg_.log_every > 0 && global_step % cfg_.log_every == 0) {
    progress_.clear();
    std::printf("step %lld  epoch %lld  loss %.6f  lr %.6g  grad_norm %.4g  %.0f samples/s\n",
                static_cast<long long>(global_step), static_cast<long long>(rec.epoch + 1), rec.loss, rec.lr,
                rec.grad_norm, rate);
    std::fflush(stdout);
  }
}

void StepLog::epoch(int64_t epoch, int64_t global_step, double train_loss, const EvalResult& ev, int64_t samples,
                    double items, double train_seconds, double other_seconds, double steady_rate) {
  if (!leader_) return;
  progress_.clear();
  if (chatty_) {
    std::printf("epoch %lld/%lld  train_loss %.4f", static_cast<long long>(epoch + 1),
                static_cast<long long>(cfg_.epochs), train_loss);
    if (std::isfinite(ev.loss)) std::printf("  test_loss %.4f", ev.loss);
    if (std::isfinite(ev.loss) && token_task()) std::printf("  test_perplexity %.3f", std::exp(ev.loss));
    if (std::isfinite(ev.accuracy)) std::printf("  test_accuracy %.4f", ev.accuracy);
    const double rate = samples / std::max(train_seconds, 1e-9);
    std::printf("  %lld samples in %.3gs: %.*f samples/s", static_cast<long long>(samples), train_seconds,
                rate >= 100 ? 0 : 2, rate);
    if (token_task()) std::printf(", %.0f tokens/s", items / std::max(train_seconds, 1e-9));
    if (steady_rate > 0) std::printf(" (steady %.*f samples/s)", steady_rate >= 100 ? 0 : 2, steady_rate);
    std::printf("  (+%.2gs eval/checkpoints)\n", other_seconds);
    std::fflush(stdout);
  }
  if (tensorboard_ && cfg_.eval) {
    if (std::isfinite(ev.loss)) tensorboard_->add_scalar("test/loss", global_step, ev.loss);
    if (std::isfinite(ev.accuracy)) tensorboard_->add_scalar("test/accuracy", global_step, ev.accuracy);
    tensorboard_->flush();
  }
  if (metrics_ && cfg_.eval) {
    nlohmann::json rec = {{"event", "eval"}, {"epoch", epoch}, {"step", global_step}, {"test_loss", num(ev.loss)},
                          {"test_accuracy", num(ev.accuracy)}};
    if (token_task()) rec["test_perplexity"] = num(std::exp(ev.loss));
    metrics_->write(rec);
  }
}

void StepLog::final(const TrainResult& r, int64_t skipped_steps, double loss_scale, int world_size,
                    const std::string& backend, int64_t micro_steps) {
  if (!leader_) return;
  progress_.clear();
  if (tensorboard_) tensorboard_->flush();
  if (metrics_)
    metrics_->write({{"event", "final"}, {"step", r.steps}, {"steps", r.steps}, {"params_sum", r.params_sum},
                     {"params_l2", r.params_l2}, {"test_accuracy", num(r.test.accuracy)},
                     {"test_loss", num(r.test.loss)}, {"last_loss", num(r.last_loss)},
                     {"allreduce_bytes_per_step", r.allreduce_bytes_per_step},
                     {"wire_bytes_per_step", r.wire_bytes_per_step}, {"optimizer_state_bytes", r.optimizer_state_bytes},
                     {"shard_optimizer", r.sharded}, {"skipped_steps", skipped_steps},
                     {"precision", to_string(cfg_.precision)}, {"loss_scale", loss_scale},
                     {"world_size", world_size}, {"backend", backend}, {"micro_steps_per_window", micro_steps},
                     {"train_seconds", r.train_seconds}, {"samples_per_s", r.samples_per_second},
                     {"steady_samples_per_s", r.steady_samples_per_second}, {"device_peak_bytes", r.device_peak_bytes},
                     {"gpu_busy", num(r.gpu_busy)}, {"graph_replays", r.graph_replays}, {"tail_replays", r.tail_replays},
                     {"stopped", r.stopped}});
}

void StepLog::busy(const BusyResult& b, int64_t first, int64_t end) {
  if (!leader_) return;
  if (chatty_) {
    progress_.clear();
    std::printf("GPU busy %.1f%% of the wall time over steps %lld-%lld: %.2f ms of device activity (%lld kernels, "
                "copies, fills) in %.2f ms\n",
                100 * b.fraction(), static_cast<long long>(first + 1), static_cast<long long>(end),
                b.busy_seconds * 1e3, static_cast<long long>(b.activities), b.wall_seconds * 1e3);
    std::fflush(stdout);
  }
  if (metrics_)
    metrics_->write({{"event", "gpu_busy"}, {"first_step", first}, {"end_step", end}, {"fraction", b.fraction()},
                     {"busy_s", b.busy_seconds}, {"wall_s", b.wall_seconds}, {"activities", b.activities}});
}

void StepLog::out_of_memory(int rank, int64_t step, int64_t from, int64_t to, const std::string& why) {
  if (!cfg_.quiet) {
    progress_.clear();
    std::fprintf(stderr, "%s: rank %d ran out of memory in step %lld with chunks of %lld samples (%s): the window "
                 "was redone in chunks of %lld, kept from now on (--chunk %lld); the result is unchanged\n",
                 MpiEnv::program(), rank, static_cast<long long>(step), static_cast<long long>(from), why.c_str(),
                 static_cast<long long>(to), static_cast<long long>(to));
    std::fflush(stderr);
  }
  if (metrics_)
    metrics_->write({{"event", "out_of_memory"}, {"step", step}, {"rank", rank}, {"chunk_before", from},
                     {"chunk_after", to}, {"reason", why}});
}

void StepLog::decided(const std::string& line, const nlohmann::json& event) {
  if (!leader_) return;
  if (!cfg_.quiet) {
    progress_.clear();
    std::printf("%s: %s\n", MpiEnv::program(), line.c_str());
    std::fflush(stdout);
  }
  if (metrics_) metrics_->write(event);
}

void StepLog::stopped(int64_t global_step, int signal, bool checkpointed) {
  if (!leader_) return;
  progress_.clear();
  if (metrics_)
    metrics_->write({{"event", "stopped"}, {"step", global_step}, {"signal", signal_name(signal)}, {"checkpoint", checkpointed}});
}

}  // namespace vdp
