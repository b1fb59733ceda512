// The checks of a parsed Config: each row's range (from the option table), the rules between options
// by section, and the output paths. Every failure is one UserError line naming the option.
#include "validate.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>

#include "option_rows.h"
#include "vdp/core/error.h"

namespace vdp::options {
namespace {

namespace fs = std::filesystem;

template <typename T>
void require(bool ok, const char* option, const T& value, const char* allowed) {
  VDP_CHECK(ok, "invalid value for --", option, ": ", value, " (", allowed, ")");
}

// Every number against its row's range.
void check_ranges(const Config& c) {
  for (const Row& r : rows()) {
    if (!*r.range.words) continue;
    std::visit(
        [&](const auto& f) {
          using F = std::decay_t<decltype(f)>;
          if constexpr (std::is_same_v<F, int64_t Config::*> || std::is_same_v<F, double Config::*>)
            require(r.range.holds(static_cast<double>(c.*f)), r.info.name.c_str(), c.*f, r.range.words);
        },
        r.field);
  }
}

void check_run(const Config& c) {
  require(!c.cuda_graphs || c.device != DeviceKind::Cpu, "cuda-graphs", "true",
          "captures GPU work: use it with --device cuda");
  require(!c.cuda_graphs || c.bn_momentum_unit != MomentumUnit::Window, "cuda-graphs", "true",
          "cannot follow a BatchNorm momentum that changes per window (bn-momentum-unit = window): a capture "
          "holds the momentum it saw; use bn-momentum-unit = micro-step");
  VDP_CHECK(!c.print_ids || c.dry_run, "invalid value for --print-ids: it goes with --dry-run");
}

// Why `p` is not a regular file to read, as the rest of a sentence "'<folder>' ...".
std::string not_a_file(const fs::path& p) {
  struct stat lst {}, st {};
  const std::string name = p.filename().string();
  if (::lstat(p.c_str(), &lst) != 0) return "has no " + name;
  if (S_ISLNK(lst.st_mode) && ::stat(p.c_str(), &st) != 0) return "has " + name + " as a symbolic link to nothing";
  if (!S_ISLNK(lst.st_mode)) st = lst;
  if (S_ISDIR(st.st_mode)) return "has " + name + " as a folder, not a file";
  if (S_ISFIFO(st.st_mode)) return "has " + name + " as a FIFO, not a file";
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) return "has " + name + " as a device, not a file";
  return "has " + name + " as something other than a regular file";
}

void check_data(const Config& c, bool own_task) {
  if (own_task) return;  // a program with its own task brings its own data
  if (c.dataset == DatasetKind::Tokens)
    VDP_CHECK(fs::is_directory(c.data_dir), "invalid value for --data-dir: '", c.data_dir,
              "' is not a directory (--dataset tokens reads llm.c token shards *train*.bin and *val*.bin from it; "
              "launch/pydoc_shards.sh makes out/pydoc_shards, the corpus of configs/gpt_*.ini, and "
              "launch/make_shards.py makes shards from your own text)");
  if (c.dataset == DatasetKind::Npy) {
    VDP_CHECK(fs::is_directory(c.data_dir), "invalid value for --data-dir: '", c.data_dir,
              "' is not a directory (--dataset npy reads x.npy and y.npy from the folder --data-dir names)");
    for (const char* f : {"x.npy", "y.npy"})
      VDP_CHECK(fs::is_regular_file(fs::path(c.data_dir) / f), "invalid value for --data-dir: '", c.data_dir, "' ",
                not_a_file(fs::path(c.data_dir) / f), " (--dataset npy needs x.npy and y.npy, written by numpy.save)");
  }
  if (c.dataset == DatasetKind::FashionMnist) {
    VDP_CHECK(fs::is_directory(c.data_dir), "invalid value for --data-dir: '", c.data_dir,
              "' is not a directory (install the Debian package dataset-fashion-mnist, or point --data-dir "
              "at a folder holding the four Fashion-MNIST .gz files)");
    for (const char* f : kFashionMnistFiles)
      VDP_CHECK(fs::is_regular_file(fs::path(c.data_dir) / f), "invalid value for --data-dir: '", c.data_dir, "' ",
                not_a_file(fs::path(c.data_dir) / f),
                " (install dataset-fashion-mnist, or point --data-dir at a folder holding the four .gz files)");
  }
}

void check_model(const Config& c, bool own_task) {
  VDP_CHECK(c.precision == Precision::Fp32 || c.dtype == DType::Float32, "invalid value for --precision: ",
            to_string(c.precision), " with --dtype ", to_string(c.dtype),
            " (autocast keeps parameters in float32: use --dtype float32)");
  // Which models fit which data: the input and output shapes are fixed by the dataset. A program
  // with its own task (vdp::run with make_task) brings its own data and model: nothing to check.
  auto fits = [&](bool ok, const char* allowed) {
    if (c.model == ModelKind::Torchscript) return;  // checked against the data when the model is loaded
    VDP_CHECK(ok, "invalid value for --model: '", to_string(c.model), "' does not fit --dataset ", to_string(c.dataset),
              " (use ", allowed, ")");
  };
  if (!own_task) switch (c.dataset) {
      case DatasetKind::FashionMnist:
        fits(c.model == ModelKind::Mlp || c.model == ModelKind::FmnistCnn || c.model == ModelKind::Resnet18,
             "mlp, fmnist-cnn or resnet18");
        break;
      case DatasetKind::Regression: fits(c.model == ModelKind::Mlp, "mlp"); break;
      case DatasetKind::BceToy: fits(c.model == ModelKind::SeedConvnet, "seed-convnet"); break;
      case DatasetKind::Sequence: fits(c.model == ModelKind::SeqGru, "seq-gru"); break;
      case DatasetKind::Npy: break;  // shapes are checked against the arrays when they are loaded
      case DatasetKind::Tokens:
        fits(c.model == ModelKind::Gpt || c.model == ModelKind::Gpt2Small, "gpt or gpt2-small");
        break;
    }
  VDP_CHECK(own_task || c.norm == NormKind::None || c.model == ModelKind::FmnistCnn || c.model == ModelKind::Resnet18,
            "invalid value for --norm: '", to_string(c.norm),
            "' (normalization layers exist in fmnist-cnn and resnet18 only; use --norm none)");
  VDP_CHECK(c.model != ModelKind::Torchscript || !c.model_file.empty(), "invalid value for --model: torchscript "
            "needs --model-file FILE.pt (a module saved from Python with torch.jit.script(model).save)");
  VDP_CHECK(c.model_file.empty() || c.model == ModelKind::Torchscript, "invalid value for --model-file: it goes "
            "with --model torchscript");
  VDP_CHECK(c.model_file.empty() || fs::is_regular_file(c.model_file), "invalid value for --model-file: '",
            c.model_file, "' is not a readable file");
  VDP_CHECK(!c.channels_last || c.model == ModelKind::Resnet18, "invalid value for --channels-last: it applies to "
            "--model resnet18 only");
  VDP_CHECK(!c.recompute || own_task || c.model == ModelKind::Gpt || c.model == ModelKind::Gpt2Small ||
                c.model == ModelKind::Resnet18 || c.model == ModelKind::Mlp,
            "invalid value for --recompute: --model ", to_string(c.model), " has no blocks to recompute (gpt, gpt2-small, "
            "resnet18 and mlp have; leave --recompute out)");
  VDP_CHECK(!c.recompute || (c.norm != NormKind::Batch && c.norm != NormKind::SyncBatch),
            "invalid value for --recompute: --norm ", to_string(c.norm), " would update BatchNorm's running statistics "
            "again (and SyncBatchNorm would communicate again) when a block runs a second time; use --norm group or none");
  VDP_CHECK(!c.shard_optimizer || !c.cuda_graphs, "invalid value for --shard-optimizer: the sharded step's "
            "collectives (an all-gather after the optimizer) cannot be captured in a CUDA graph; choose "
            "--shard-optimizer or --cuda-graphs");
  VDP_CHECK(!c.recompute || !c.cuda_graphs, "invalid value for --recompute: a block run again in backward cannot be "
            "captured in a CUDA graph; choose --recompute or --cuda-graphs");
  VDP_CHECK(c.model != ModelKind::Gpt || c.hidden % c.heads == 0, "invalid value for --hidden: ", c.hidden,
            " (the gpt width must be a multiple of --heads ", c.heads, ")");
}

void check_batch(const Config& c) {
  parse_memory_budget(c.memory_budget);
  VDP_CHECK(c.micro_batch != 0 || c.chunk == 0, "invalid value for --chunk: ", c.chunk, " (with --micro-batch auto "
            "the search chooses each rank's chunk; leave --chunk out, or give --micro-batch a number)");
  VDP_CHECK(c.micro_batch != 0 || c.norm != NormKind::SyncBatch, "invalid value for --micro-batch: auto (SyncBatchNorm "
            "communicates in every forward, so ranks cannot measure their micro-steps alone; give --micro-batch a "
            "number)");
  VDP_CHECK(c.chunk == 0 || c.chunk >= c.micro_batch || (c.norm != NormKind::Batch && c.norm != NormKind::SyncBatch),
            "invalid value for --chunk: ", c.chunk, " (--norm ", to_string(c.norm), " computes statistics over what "
            "one forward sees: chunks of ", c.chunk, " samples instead of micro-batches of ", c.micro_batch,
            "; use --norm group or none, or leave --chunk out)");
}

void check_optim(const Config& c) {
  require(!c.nesterov || c.momentum > 0, "nesterov", "true", "Nesterov needs --momentum > 0");
  require(c.optimizer == OptimizerKind::Sgd || c.momentum == 0, "momentum", c.momentum,
          "momentum applies to --optimizer sgd only; use --beta1 for adam/adamw");
  require(c.min_lr <= c.lr, "min-lr", c.min_lr, "must be in [0, lr]");
  require(!c.amsgrad || c.optimizer != OptimizerKind::Sgd, "amsgrad", "true",
          "AMSGrad applies to --optimizer adam or adamw only");
}

void check_dist(const Config& c) {
  require(c.gpu_busy_steps == 0 || c.device != DeviceKind::Cpu, "gpu-busy-steps", c.gpu_busy_steps,
          "measures a GPU: use it with --device cuda");
}

// Nearest existing ancestor of `p` (p itself if it exists).
fs::path existing_ancestor(fs::path p) {
  std::error_code ec;
  p = fs::absolute(p, ec);
  while (!p.empty() && !fs::exists(p, ec) && p != p.parent_path()) p = p.parent_path();
  return p;
}

const char* file_kind(mode_t m) {
  if (S_ISCHR(m)) return "character device";
  if (S_ISBLK(m)) return "block device";
  if (S_ISFIFO(m)) return "FIFO";
  if (S_ISSOCK(m)) return "socket";
  if (S_ISDIR(m)) return "folder";
  return "special file";
}

// The output-path policy for files (launch/README.md, "Outputs"), decided before anything is
// created. vdp writes a file by creating a new one in the same folder and renaming it over the
// path, so the path must name a regular file or nothing: anything else (a device, a FIFO, a
// socket) would be replaced. A symbolic link is followed: its target is written (the new file is
// made in the target's folder and renamed over the target; the link stays), and a link to nothing
// is refused. The metrics file, written line by line, may also be a character device or a FIFO
// (/dev/stdout, a pipe to another program): it is then written in place, never replaced.
void apply_output_policy(const char* option, std::string& path) {
  VDP_CHECK(path.back() != '/', "invalid value for --", option, ": '", path, "' ends with '/' (give a file path)");
  const bool streams = std::string(option) == "metrics";
  struct stat lst {}, st {};
  if (::lstat(path.c_str(), &lst) != 0) return;  // nothing there: created (the folder is checked below)
  if (S_ISLNK(lst.st_mode)) {
    VDP_CHECK(::stat(path.c_str(), &st) == 0, "invalid value for --", option, ": '", path, "' is a symbolic link to "
              "nothing (", std::strerror(errno), "); give a file path, or make the link point to a file");
    if (S_ISREG(st.st_mode)) {
      std::error_code ec;
      const fs::path target = fs::canonical(path, ec);
      VDP_CHECK(!ec, "invalid value for --", option, ": cannot follow the symbolic link '", path, "': ", ec.message());
      path = target.string();
      return;
    }
  } else {
    st = lst;
  }
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) return;  // a folder is refused below with its own line
  if (streams && (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode))) return;
  VDP_FAIL("invalid value for --", option, ": '", path, "' is a ", file_kind(st.st_mode), ", not a regular file; vdp "
           "writes a new file and renames it over the path, which would replace it (give the path of a file",
           streams ? "; the metrics may also go to a character device or a FIFO" : "", ")");
}

// Every output is checked before anything is created (bad input writes nothing): files must not be
// folders, folders must not be files, the place each would be created in must be a writable folder,
// and no two outputs may be the same path.
void check_output(Config& c) {
  VDP_CHECK(c.checkpoint_every == 0 || !c.checkpoint_dir.empty(), "invalid value for --checkpoint-every: ",
            c.checkpoint_every, " (needs --checkpoint-dir)");
  VDP_CHECK(c.resume != "auto" || !c.checkpoint_dir.empty(), "invalid value for --resume: auto (needs "
            "--checkpoint-dir to look in)");
  VDP_CHECK(c.resume.empty() || c.resume == "auto" || fs::is_directory(c.resume), "invalid value for --resume: '",
            c.resume, "' is not a checkpoint folder (give a step-N folder or auto)");
  VDP_CHECK(c.resume.empty() || c.init_weights.empty(), "--resume and --init-weights exclude each other (a "
            "checkpoint holds its own weights)");
  VDP_CHECK(c.init_weights.empty() || fs::is_regular_file(c.init_weights), "invalid value for --init-weights: '",
            c.init_weights, "' is not a readable file (give the path of a .safetensors file written by --save-weights)");
  if (c.metrics == "auto") c.metrics = auto_metrics_path(c);
  struct Out {
    const char* option;
    std::string* path;
    bool folder;
  };
  const std::vector<Out> outs = {{"metrics", &c.metrics, false},
                                 {"save-weights", &c.save_weights, false},
                                 {"save-init-weights", &c.save_init_weights, false},
                                 {"tensorboard-dir", &c.tensorboard_dir, true},
                                 {"checkpoint-dir", &c.checkpoint_dir, true}};
  std::map<std::string, const char*> seen;
  for (const Out& o : outs) {
    if (o.path->empty()) continue;
    if (!o.folder) apply_output_policy(o.option, *o.path);
    std::error_code ec;
    const fs::path p(*o.path);
    const auto st = fs::status(p, ec);
    if (fs::exists(st)) {
      if (o.folder)
        VDP_CHECK(fs::is_directory(st), "invalid value for --", o.option, ": '", *o.path,
                  "' exists and is not a folder (give a folder path)");
      else
        VDP_CHECK(!fs::is_directory(st), "invalid value for --", o.option, ": '", *o.path, "' is a folder (give a file path, e.g. ",
                  (p / (std::string(o.option) == "metrics" ? "metrics.jsonl" : "weights.safetensors")).string(), ")");
      VDP_CHECK(::access(p.c_str(), W_OK) == 0, "invalid value for --", o.option, ": '", *o.path,
                "' is not writable (check its permissions)");
    } else {
      const fs::path anc = existing_ancestor(p.has_parent_path() ? p.parent_path() : fs::path("."));
      VDP_CHECK(fs::is_directory(anc, ec), "invalid value for --", o.option, ": '", *o.path, "' cannot be created: '",
                anc.string(), "' is not a folder");
      VDP_CHECK(::access(anc.c_str(), W_OK | X_OK) == 0, "invalid value for --", o.option, ": '", *o.path,
                "' cannot be created: folder '", anc.string(), "' is not writable");
    }
    const std::string key = fs::weakly_canonical(fs::absolute(p, ec), ec).lexically_normal().string();
    auto [it, fresh] = seen.emplace(key, o.option);
    VDP_CHECK(fresh, "invalid value for --", o.option, ": '", *o.path, "' is also the path of --", it->second,
              " (give each output its own path)");
  }
}

}  // namespace

void validate(Config& c, bool own_task) {
  check_ranges(c);
  check_run(c);
  check_model(c, own_task);
  check_batch(c);
  check_optim(c);
  check_dist(c);
  check_data(c, own_task);
  check_output(c);
}

}  // namespace vdp::options

namespace vdp {

MemoryBudget parse_memory_budget(const std::string& text) {
  auto bad = [&] {
    VDP_FAIL("invalid value for --memory-budget: '", text, "' (a fraction in (0, 1] of the memory, or bytes with an "
             "optional K, M, G or T suffix, e.g. 0.8 or 6G)");
  };
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::logic_error&) {
    bad();
  }
  std::string suffix = text.substr(used);
  MemoryBudget b;
  if (!std::isfinite(v) || v <= 0) bad();
  if (suffix.empty() && v <= 1) {
    b.fraction = v;
    return b;
  }
  if (suffix.empty() && v < 1048576) bad();  // neither a fraction nor a plausible count of bytes
  double scale = 1;
  if (suffix == "K" || suffix == "k") scale = 1024.0;
  else if (suffix == "M") scale = 1024.0 * 1024;
  else if (suffix == "G") scale = 1024.0 * 1024 * 1024;
  else if (suffix == "T") scale = 1024.0 * 1024 * 1024 * 1024;
  else if (!suffix.empty()) bad();
  if (v * scale < 1 || v * scale > 9e18) bad();
  b.bytes = static_cast<int64_t>(v * scale);
  return b;
}

// --metrics auto: out/<INI file stem>-<8 hex digits>.metrics.jsonl, the digits a hash of every
// option that shapes the training (trait kShapes: not the outputs, epochs, max-steps or speed-only
// options, so a resumed or extended run keeps its file), so runs with other settings do not
// overwrite each other's metrics.
std::string auto_metrics_path(const Config& c) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (const auto& [name, value] : options_with(c, kShapes))
    for (unsigned char ch : name + " = " + value + "\n") h = (h ^ ch) * 1099511628211ull;
  const std::string stem = c.config_file.empty() ? "run" : std::filesystem::path(c.config_file).stem().string();
  char hex[17];
  std::snprintf(hex, sizeof hex, "%08llx", static_cast<unsigned long long>(h & 0xffffffffull));
  return "out/" + stem + "-" + hex + ".metrics.jsonl";
}

}  // namespace vdp
