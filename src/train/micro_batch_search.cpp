#include "vdp/train/micro_batch_search.h"

#include <c10/util/Exception.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <optional>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "vdp/amp/autocast.h"
#include "vdp/ckpt/checkpoint.h"
#include "vdp/core/error.h"
#include "vdp/core/generator_state.h"
#include "vdp/device/memory.h"
#include "vdp/report/step_log.h"
#include "vdp/train/trainer.h"

namespace vdp {
namespace {

int64_t bytes_of(const torch::Tensor& t) { return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0; }

// Bytes for a person: MiB below a GiB.
std::string gib(int64_t bytes) {
  char buf[32];
  const double mib = static_cast<double>(bytes) / (1024.0 * 1024);
  if (mib < 1024) std::snprintf(buf, sizeof buf, "%.1f MiB", mib);
  else std::snprintf(buf, sizeof buf, "%.2f GiB", mib / 1024);
  return buf;
}

// Ranks on this host: every rank's host name hashed, summed over ranks into its own slot.
int local_ranks(Communicator& comm) {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  const double mine = static_cast<double>(std::hash<std::string>{}(name) & ((uint64_t{1} << 52) - 1));
  std::vector<double> hosts(comm.size(), 0.0);
  hosts[comm.rank()] = mine;
  hosts = comm.all_reduce_host(hosts);
  return static_cast<int>(std::count(hosts.begin(), hosts.end(), mine));
}

// Bytes the optimizer keeps per parameter byte (momentum; Adam's two moments).
double optimizer_state_factor(const Config& cfg) {
  switch (cfg.optimizer) {
    case OptimizerKind::Sgd: return cfg.momentum > 0 ? 1.0 : 0.0;
    case OptimizerKind::Adam:
    case OptimizerKind::AdamW: return cfg.amsgrad ? 3.0 : 2.0;
  }
  return 2.0;
}

bool has_batch_norm(const Net& model) {
  for (const auto& m : model.modules(/*include_self=*/true))
    if (m->name().find("BatchNorm") != std::string::npos) return true;
  return false;
}

}  // namespace

int64_t memory_budget_bytes(const Config& cfg, const torch::Device& device, int64_t model_bytes, int local) {
  const MemoryBudget b = parse_memory_budget(cfg.memory_budget);
  if (b.bytes > 0) return b.bytes;
  const double have = static_cast<double>(available_memory(device) + model_bytes);
  return static_cast<int64_t>(b.fraction * have / (device.is_cuda() ? 1 : std::max(1, local)));
}

MicroStepMeter::MicroStepMeter(const Config& cfg, Task& task, const torch::Device& device, int world)
    : cfg_(cfg), task_(task), device_(device) {
  Net& model = *task_.model;
  int64_t grad_bytes = 0;
  for (const auto& p : model.parameters()) {
    model_bytes_ += bytes_of(p);
    if (p.requires_grad()) grad_bytes += bytes_of(p);
  }
  for (const auto& b : model.buffers()) model_bytes_ += bytes_of(b);
  // A sharded optimizer (--shard-optimizer) keeps 1/W of the state on each rank.
  const double state = optimizer_state_factor(cfg_) / (cfg_.shard_optimizer ? std::max(1, world) : 1);
  static_bytes_ = model_bytes_ + grad_bytes + static_cast<int64_t>(state * grad_bytes);
  GeneratorState rng(device_);
  rng.capture();
  rng_cpu_ = rng.cpu(), rng_cuda_ = rng.cuda();
  for (const auto& b : model.buffers()) {
    buffers_.push_back(b);
    saved_buffers_.push_back(b.detach().clone());
  }
  for (const auto& p : model.parameters())
    if (p.requires_grad()) {
      p.mutable_grad() = torch::zeros_like(p);  // gradients exist before a micro-step, as in training
      params_.push_back(p);
    }
}

MicroStepMeter::~MicroStepMeter() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < buffers_.size(); ++i) buffers_[i].copy_(saved_buffers_[i]);
  for (auto& p : params_) p.mutable_grad() = torch::Tensor();
  GeneratorState rng(device_);
  rng.set(rng_cpu_, rng_cuda_);
  rng.restore();
  release_cached_memory(device_);
}

std::optional<int64_t> MicroStepMeter::total(int64_t c) {
  ++trials_;
  std::vector<int64_t> ids(c);
  for (int64_t i = 0; i < c; ++i) ids[i] = i % task_.train->size();
  const int64_t ahead = device_.is_cuda() ? 0 : cfg_.prefetch;  // the producer's batches in this memory
  try {
    release_cached_memory(device_);
    const int64_t before = live_memory(device_);
    reset_peak_memory(device_);
    int64_t batch_bytes = 0;
    {
      const Batch batch = task_.train->get(ids).to(device_);
      batch_bytes = bytes_of(batch.x) + bytes_of(batch.y) + bytes_of(batch.mask);
      torch::Tensor y;
      {
        AutocastGuard autocast(device_, cfg_.precision);
        y = task_.model->forward(batch);
      }
      if (cfg_.precision != Precision::Fp32 && y.is_floating_point()) y = y.to(torch::kFloat32);
      task_.loss(y, batch).sum.backward();
    }
    return static_bytes_ + ahead * batch_bytes + (peak_memory(device_) - before);
  } catch (const c10::OutOfMemoryError& e) {
    reason_ = e.what_without_backtrace();
    release_cached_memory(device_);
    return std::nullopt;
  }
}

MicroBatchChoice search_micro_batch(const Config& cfg, Task& task, Communicator& comm) {
  const auto t0 = std::chrono::steady_clock::now();
  const torch::Device device = comm.device();
  const int local = local_ranks(comm);
  const int64_t w = comm.size();
  const int64_t cap = std::max<int64_t>(1, (cfg.global_batch + w - 1) / w);

  MicroBatchChoice out;
  auto meter = std::make_unique<MicroStepMeter>(cfg, task, device, static_cast<int>(w));
  out.static_bytes = meter->static_bytes();
  out.budget_bytes = memory_budget_bytes(cfg, device, meter->model_bytes(), local);
  auto total = [&](int64_t c) { return meter->total(c); };
  int64_t last_total = 0;
  auto fits = [&](int64_t c, int64_t* peak) {
    const auto t = total(c);
    if (t) last_total = *t;
    if (t && *t <= out.budget_bytes) *peak = *t;
    return t && *t <= out.budget_bytes;
  };

  int64_t lo = 0, hi = 0, peak = 0, seen = 0;
  if (!fits(1, &peak)) seen = last_total;
  if (peak > 0) {
    lo = 1;
    for (int64_t c = 2; lo < cap; c = std::min(2 * c, cap)) {
      if (!fits(c, &peak)) {
        hi = c;
        break;
      }
      lo = c;
    }
    int64_t at_lo = peak;
    while (hi > 0 && hi - lo > std::max<int64_t>(1, lo / 8)) {
      const int64_t mid = lo + (hi - lo) / 2;
      int64_t p = 0;
      if (fits(mid, &p)) lo = mid, at_lo = p;
      else hi = mid;
    }
    out.peak_bytes = at_lo;
  }

  out.trials = meter->trials();
  const std::string last_reason = meter->reason();
  meter.reset();  // gradients, running statistics and generators as they were

  if (lo == 0)
    throw IoError("--micro-batch auto: one sample does not fit this rank's memory budget of " + gib(out.budget_bytes) +
                  " (--memory-budget " + cfg.memory_budget + "): " +
                  (last_reason.empty() ? "measured " + gib(seen) + ", of which " + gib(out.static_bytes) +
                                             " are parameters, gradients and optimizer state"
                                       : "out of memory on the device (" + last_reason + ")") +
                  "; raise --memory-budget, add --recompute, or train a smaller model");

  // Every rank's largest chunk; the plan's m is the largest (the smallest with BatchNorm).
  std::vector<double> all(w, 0.0);
  all[comm.rank()] = static_cast<double>(lo);
  all = comm.all_reduce_host(all);
  for (double v : all) out.fits.push_back(static_cast<int64_t>(std::llround(v)));
  out.micro_batch = has_batch_norm(*task.model) ? *std::min_element(out.fits.begin(), out.fits.end())
                                          : *std::max_element(out.fits.begin(), out.fits.end());
  // The same K with the smallest m: slots are balanced anyway, and the figures then say what runs.
  const int64_t k = (cap + out.micro_batch - 1) / out.micro_batch;
  out.micro_batch = (cap + k - 1) / k;
  out.chunk = lo < out.micro_batch ? lo : 0;
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace vdp

// The trainer's side: the choice comes from the checkpoint a resume will load (unless
// --search-again), else from a search; then the plan is made for it.
namespace vdp {

void Trainer::choose_micro_batch() {
  comm_->set_phase("start-up: --micro-batch auto");
  MicroBatchChoice& c = micro_batch_choice_;
  if (!cfg_.resume.empty() && !cfg_.search_again) {
    // Rank 0 reads the choice from the checkpoint a resume would take; a damaged one is reported
    // by the resume itself, later, with its own line: here it only means "search".
    std::string saved;
    if (comm_->rank() == 0) {
      try {
        const std::string path = cfg_.resume != "auto"        ? cfg_.resume
                                 : cfg_.checkpoint_dir.empty() ? std::string()
                                                               : latest_checkpoint(cfg_.checkpoint_dir);
        if (!path.empty()) {
          std::ifstream in(std::filesystem::path(path) / "state.json");
          const nlohmann::json st = nlohmann::json::parse(in);
          if (st.contains("micro_batch_search")) saved = nlohmann::json{{"path", path}, {"choice", st["micro_batch_search"]}}.dump();
        }
      } catch (const std::exception&) {
        saved.clear();
      }
    }
    saved = comm_->broadcast_string(saved, 0);
    if (!saved.empty()) {
      const nlohmann::json j = nlohmann::json::parse(saved);
      c.from_checkpoint = j["path"].get<std::string>();
      c.micro_batch = j["choice"].value("micro_batch", int64_t{0});
      c.fits = j["choice"].value("fits", std::vector<int64_t>{});
      c.peak_bytes = j["choice"].value("peak_bytes", int64_t{0});
      c.budget_bytes = j["choice"].value("budget_bytes", int64_t{0});
      // The same ranks keep their own chunk sizes; at another world size every rank takes the
      // smallest (an out-of-memory error would still be recovered from by halving).
      const int64_t mine = static_cast<int64_t>(c.fits.size()) == comm_->size()
                               ? c.fits[comm_->rank()]
                               : (c.fits.empty() ? c.micro_batch : *std::min_element(c.fits.begin(), c.fits.end()));
      c.chunk = mine < c.micro_batch ? mine : 0;
    }
  }
  if (c.micro_batch < 1) c = search_micro_batch(cfg_, task_, *comm_);
  cfg_.micro_batch = c.micro_batch;
  cfg_.chunk = c.chunk;
  plan_ = Plan(PlanParams{task_.train->size(), cfg_.global_batch, comm_->size(), cfg_.micro_batch, cfg_.seed,
                          cfg_.drop_last, cfg_.shuffle});
  total_steps_ = plan_.steps_per_epoch() * cfg_.epochs;
  if (cfg_.max_steps > 0) total_steps_ = std::min(total_steps_, cfg_.max_steps);
}

void Trainer::report_micro_batch() {
  const MicroBatchChoice& c = micro_batch_choice_;
  if (c.micro_batch < 1) return;
  std::string fits;
  for (int64_t f : c.fits) fits += (fits.empty() ? "" : " ") + std::to_string(f);
  char line[512];
  if (c.from_checkpoint.empty())
    std::snprintf(line, sizeof line,
                  "--micro-batch auto: m = %lld, K = %lld (B = %lld, W = %d); largest chunk per rank: %s; "
                  "rank 0 measured %s of its %s budget (%s parameters, gradients, optimizer state); %d trials in "
                  "%.2f s",
                  static_cast<long long>(c.micro_batch), static_cast<long long>(plan_.full_micro_steps()),
                  static_cast<long long>(cfg_.global_batch), comm_->size(), fits.c_str(), gib(c.peak_bytes).c_str(),
                  gib(c.budget_bytes).c_str(), gib(c.static_bytes).c_str(), c.trials, c.seconds);
  else
    std::snprintf(line, sizeof line,
                  "--micro-batch auto: m = %lld, K = %lld, as chosen for checkpoint '%s' (largest chunk per rank "
                  "then: %s); --search-again measures again",
                  static_cast<long long>(c.micro_batch), static_cast<long long>(plan_.full_micro_steps()),
                  c.from_checkpoint.c_str(), fits.c_str());
  log_->decided(line, {{"event", "micro_batch_search"},
                       {"micro_batch", c.micro_batch},
                       {"micro_steps", plan_.full_micro_steps()},
                       {"fits", c.fits},
                       {"peak_bytes", c.peak_bytes},
                       {"static_bytes", c.static_bytes},
                       {"budget_bytes", c.budget_bytes},
                       {"trials", c.trials},
                       {"seconds", c.seconds},
                       {"from_checkpoint", c.from_checkpoint}});
}

}  // namespace vdp
