// The trainer's checkpoint side (include/vdp/README.md, "Checkpoints"): the folder lock, choosing and restoring the
// checkpoint to resume from, and capturing the state to save. Kept apart from the loop in
// trainer.cpp.
#include <torch/optim/optimizer.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "vdp/amp/grad_scaler.h"
#include "vdp/ckpt/checkpoint.h"
#include "vdp/ckpt/checkpoint_dir.h"
#include "vdp/ckpt/safetensors.h"
#include "vdp/core/error.h"
#include "vdp/device/compute_stream.h"
#include "vdp/core/generator_state.h"
#include "vdp/dist/mpi_env.h"
#include "vdp/optim/optim.h"
#include "vdp/train/rank_agreement.h"
#include "vdp/train/trainer.h"

namespace vdp {
namespace {

// Runs `work` on rank 0 and makes its verdict everyone's: a UserError there becomes an AgreedError
// on every rank (rank 0 reports it, every rank exits 2, nobody aborts). Returns rank 0's string.
std::string on_rank0(Communicator& comm, const std::function<std::string()>& work) {
  std::string value, error;
  if (comm.rank() == 0) {
    try {
      value = work();
    } catch (const UserError& e) {
      error = e.what();
    }
  }
  error = comm.broadcast_string(error, 0);
  if (!error.empty()) throw AgreedError(error);
  return comm.broadcast_string(value, 0);
}

}  // namespace

void Trainer::setup_checkpoints() {
  comm_->set_phase("start-up: checkpoint folder");
  const bool leader = comm_->rank() == 0;
  std::string path;
  try {
    path = on_rank0(*comm_, [&]() -> std::string {
      if (!cfg_.checkpoint_dir.empty()) {
        // One run per folder; what interrupted writers left is removed under the lock.
        ckpt_lock_ = std::make_unique<CheckpointDirLock>(cfg_.checkpoint_dir);
        remove_stale_checkpoint_files(cfg_.checkpoint_dir);
      }
      if (cfg_.resume.empty()) {
        // A fresh run among another run's checkpoints would have its own deleted by --keep-last
        // (they have lower step numbers) and --resume auto would later pick the wrong ones.
        if (!cfg_.checkpoint_dir.empty()) {
          const std::string old = latest_checkpoint(cfg_.checkpoint_dir);
          VDP_CHECK(old.empty(), "invalid value for --checkpoint-dir: '", cfg_.checkpoint_dir,
                    "' already holds checkpoints (newest: ", old, "); add --resume auto to continue that run, or "
                    "use an empty folder");
        }
        return "";
      }
      const std::string chosen = choose_resume_path();
      if (!chosen.empty()) resume(chosen);  // rank 0 verifies everything before the others load
      return chosen;
    });
  } catch (...) {
    if (ckpt_lock_) ckpt_lock_->discard();
    throw;
  }
  // Rank 0 chose (ranks resolving "auto" on their own could pick different folders on a shared
  // file system being written); every other rank loads the same one.
  if (!leader && !path.empty()) resume(path);
}

std::string Trainer::choose_resume_path() {
  if (cfg_.resume != "auto") return cfg_.resume;
  // The newest checkpoint that verifies: a corrupt newest one is skipped with one warning line.
  return newest_valid_checkpoint(cfg_.checkpoint_dir, [](const std::string& why) {
    std::fprintf(stderr, "%s: warning: %s\n", MpiEnv::program(), why.c_str());
    std::fflush(stderr);
  });
}

void Trainer::resume(const std::string& path) {
  const CheckpointData ckpt = load_checkpoint(path);
  const nlohmann::json& st = ckpt.state;
  auto same = [&](const char* key, const nlohmann::json& now, const char* option) {
    VDP_CHECK(st.contains(key) && st[key] == now, "checkpoint '", path, "' was made with --", option, " ",
              st.contains(key) ? st[key].dump() : std::string("?"), ", this run has ", now.dump(),
              "; resume with the same value (world size and micro-batch may change)");
  };
  same("num_samples", task_.train->size(), "samples (dataset size)");
  // Counters a checkpoint of vdp's cannot hold (a hand-edited or damaged state.json).
  const int64_t step = st.value("step", int64_t{-1}), taken = st.value("optimizer_steps", step),
                skipped = st.value("skipped_steps", int64_t{0});
  VDP_CHECK(step >= 0 && taken >= 0 && taken <= step && skipped >= 0 && skipped <= step, "checkpoint '", path,
            "' holds impossible counters in state.json (step ", step, ", optimizer_steps ", taken, ", skipped_steps ",
            skipped, "); resume from an intact step-N folder");
  // Every option whose row says a checkpoint resumes only with the same value (kResume).
  const nlohmann::json saved = st.value("options", nlohmann::json::object());
  for (const auto& [name, value] : options_with(cfg_, kResume)) {
    const std::string was = saved.contains(name) && saved[name].is_string() ? saved[name].get<std::string>() : "?";
    VDP_CHECK(was == value, "checkpoint '", path, "' was made with --", name, " ", was, ", this run has ", value,
              "; resume with the same value (world size and micro-batch may change)");
  }
  // The data itself (checkpoints written before vdp recorded it are taken on trust).
  if (st.contains("data_digest"))
    VDP_CHECK(st["data_digest"] == data_digest(*task_.train), "checkpoint '", path, "' was made on other training "
              "data (the digest of its first, middle and last samples differs); resume on the same data");
  // What the optimizer keeps per parameter: a checkpoint without momentum buffers cannot resume a
  // run with momentum, nor the other way round.
  if (st.contains("optimizer_state"))
    VDP_CHECK(st["optimizer_state"] == optimizer_state_kind(), "checkpoint '", path, "' holds optimizer state '",
              st["optimizer_state"].get<std::string>(), "' and this run keeps '", optimizer_state_kind(),
              "'; resume with the same optimizer and momentum on or off as before");
  std::map<std::string, torch::Tensor> extra(ckpt.trainer.begin(), ckpt.trainer.end());
  VDP_CHECK(extra.count("rng.cpu"),
            "checkpoint '", path, "' holds no random-generator state (rng.cpu in trainer.safetensors), so the "
            "run could not continue on its trajectory; resume from an intact step-N folder");
  load_module_state(*task_.model, ckpt.weights, path + "/weights.safetensors");
  window_->load_optimizer_state(ckpt.optimizer, path + "/optimizer.safetensors");
  {
    GeneratorState rng(device_);  // this rank's CPU generator and, on a GPU, its device's
    rng.set(extra.count("rng.cpu") ? extra.at("rng.cpu") : torch::Tensor(),
            extra.count("rng.cuda") ? extra.at("rng.cuda") : torch::Tensor());
    rng.restore();
  }
  if (extra.count("scaler.scale") && extra.count("scaler.growth_tracker"))
    scaler().load_state(extra.at("scaler.scale"), extra.at("scaler.growth_tracker"));
  global_step_ = start_global_step_ = st.value("step", int64_t{0});
  optimizer_steps_ = st.value("optimizer_steps", global_step_);
  skipped_steps_ = st.value("skipped_steps", int64_t{0});
  last_checkpoint_step_ = global_step_;
  resumed_from_ = path;
}

std::string Trainer::optimizer_state_kind() const {
  switch (cfg_.optimizer) {
    case OptimizerKind::Sgd: return cfg_.momentum > 0 ? "sgd with momentum" : "sgd without momentum";
    case OptimizerKind::Adam: return cfg_.amsgrad ? "adam with amsgrad" : "adam";
    case OptimizerKind::AdamW: return cfg_.amsgrad ? "adamw with amsgrad" : "adamw";
  }
  return "?";
}

void Trainer::save_checkpoint_now() {
  const ComputeStreamScope compute(device_);  // called from fit() and by embedders
  // The host's counters (optimizer steps taken, Adam's step counts) must include the last window.
  settle();
  last_checkpoint_step_ = global_step_;
  if (cfg_.checkpoint_dir.empty()) return;
  // Every rank takes part: a sharded optimizer's state is assembled on rank 0 from every rank's shard.
  NamedTensors optimizer_state = window_->optimizer_state();
  if (comm_->rank() != 0) return;
  CheckpointData d;
  d.weights = module_state(*task_.model);
  d.optimizer = std::move(optimizer_state);
  {
    GeneratorState rng(device_);
    rng.capture();
    d.trainer.emplace_back("rng.cpu", rng.cpu());
    if (rng.cuda().defined()) d.trainer.emplace_back("rng.cuda", rng.cuda());
  }
  for (auto& t : scaler().state()) d.trainer.push_back(t);
  d.state = {{"num_samples", task_.train->size()}, {"global_batch", cfg_.global_batch},
             {"micro_batch", cfg_.micro_batch},    {"world_size", comm_->size()},
             {"drop_last", cfg_.drop_last},         {"seed", cfg_.seed}, {"shuffle", cfg_.shuffle},
             {"model", to_string(cfg_.model)},      {"optimizer", to_string(cfg_.optimizer)},
             {"dataset", to_string(cfg_.dataset)},  {"dtype", to_string(cfg_.dtype)},
             {"optimizer_steps", optimizer_steps_}, {"skipped_steps", skipped_steps_},
             {"config", config_to_ini(cfg_)}};
  for (const auto& [name, value] : options_with(cfg_, kResume)) d.state["options"][name] = value;
  d.state["data_digest"] = data_digest(*task_.train);
  d.state["optimizer_state"] = optimizer_state_kind();
  if (const MicroBatchChoice& c = micro_batch_choice_; c.micro_batch > 0)
    d.state["micro_batch_search"] = {{"micro_batch", c.micro_batch}, {"fits", c.fits}, {"peak_bytes", c.peak_bytes},
                                     {"budget_bytes", c.budget_bytes}};
  save_checkpoint(cfg_.checkpoint_dir, global_step_, d, static_cast<int>(cfg_.keep_last));
}

}  // namespace vdp
