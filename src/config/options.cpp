// Declares every option once (name, section, default, help), parses command line + INI with
// Boost.Program_options, and validates into vdp::Config. See include/vdp/config/config.h.
#include "vdp/config/config.h"

#include <boost/program_options.hpp>

#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>

#include "vdp/core/error.h"
#include "ini.h"

namespace po = boost::program_options;

namespace vdp {
namespace {

// Enum options travel as strings through Boost and are mapped here, so the allowed names live in
// one table per enum and messages can list them.
template <typename E>
struct EnumNames {
  std::vector<std::pair<const char*, E>> names;
  std::string allowed() const {
    std::string s;
    for (size_t i = 0; i < names.size(); ++i) s += (i ? "|" : "") + std::string(names[i].first);
    return s;
  }
  E parse(const std::string& option, const std::string& value) const {
    for (const auto& [n, e] : names)
      if (value == n) return e;
    VDP_FAIL("invalid value for --", option, ": '", value, "' (allowed: ", allowed(), ")");
  }
  const char* name(E e) const {
    for (const auto& [n, v] : names)
      if (v == e) return n;
    return "?";
  }
};

const EnumNames<DatasetKind> kDatasets{{{"fashion-mnist", DatasetKind::FashionMnist},
                                        {"regression", DatasetKind::Regression},
                                        {"bce-toy", DatasetKind::BceToy},
                                        {"sequence", DatasetKind::Sequence},
                                        {"npy", DatasetKind::Npy},
                                        {"tokens", DatasetKind::Tokens}}};
const EnumNames<LossKind> kLosses{{{"auto", LossKind::Auto},
                                   {"cross-entropy", LossKind::CrossEntropy},
                                   {"bce", LossKind::Bce},
                                   {"mse", LossKind::Mse},
                                   {"token-cross-entropy", LossKind::TokenCrossEntropy}}};
const EnumNames<ModelKind> kModels{{{"mlp", ModelKind::Mlp},
                                    {"seed-convnet", ModelKind::SeedConvnet},
                                    {"fmnist-cnn", ModelKind::FmnistCnn},
                                    {"seq-gru", ModelKind::SeqGru},
                                    {"resnet18", ModelKind::Resnet18},
                                    {"torchscript", ModelKind::Torchscript},
                                    {"gpt", ModelKind::Gpt},
                                    {"gpt2-small", ModelKind::Gpt2Small}}};
const EnumNames<NormKind> kNorms{
    {{"none", NormKind::None}, {"batch", NormKind::Batch}, {"syncbatch", NormKind::SyncBatch}, {"group", NormKind::Group}}};
const EnumNames<MomentumUnit> kMomentumUnits{{{"micro-step", MomentumUnit::MicroStep}, {"window", MomentumUnit::Window}}};
const EnumNames<OptimizerKind> kOptimizers{
    {{"sgd", OptimizerKind::Sgd}, {"adam", OptimizerKind::Adam}, {"adamw", OptimizerKind::AdamW}}};
const EnumNames<ScheduleKind> kSchedules{{{"constant", ScheduleKind::Constant},
                                          {"step", ScheduleKind::Step},
                                          {"cosine", ScheduleKind::Cosine}}};
const EnumNames<Precision> kPrecisions{
    {{"fp32", Precision::Fp32}, {"bf16", Precision::Bf16}, {"fp16", Precision::Fp16}}};
const EnumNames<ScalerMode> kScalerModes{{{"auto", ScalerMode::Auto}, {"on", ScalerMode::On}, {"off", ScalerMode::Off}}};
const EnumNames<NonFinite> kNonFinite{{{"error", NonFinite::Error}, {"skip", NonFinite::Skip}}};
const EnumNames<DType> kDTypes{{{"float32", DType::Float32}, {"float64", DType::Float64}}};
const EnumNames<DeviceKind> kDevices{
    {{"auto", DeviceKind::Auto}, {"cpu", DeviceKind::Cpu}, {"cuda", DeviceKind::Cuda}}};
const EnumNames<BackendKind> kBackends{{{"auto", BackendKind::Auto},
                                        {"self", BackendKind::Self},
                                        {"mpi", BackendKind::Mpi},
                                        {"nccl", BackendKind::Nccl}}};

// Strings for the enum options while Boost parses.
struct RawEnums {
  std::string dataset, model, norm, loss, bn_momentum_unit, precision, grad_scaler, nonfinite, dtype, optimizer, lr_schedule, device, backend;
};

// The sections of --help and of the INI file, in order.
const std::array<std::pair<const char*, const char*>, 9> kSections{{
    {"run", "Run"},
    {"data", "Data"},
    {"model", "Model"},
    {"batch", "Batch and accumulation (counts are samples)"},
    {"optim", "Optimizer"},
    {"schedule", "Learning-rate schedule (stepped per optimizer step)"},
    {"amp", "Mixed precision"},
    {"dist", "Devices and ranks"},
    {"output", "Output"},
}};

struct Declared {
  std::map<std::string, po::options_description> sections;
  std::map<std::string, std::string> section_of;  // option name -> section
};

// The single declaration of every option.
Declared declare(Config& c, RawEnums& r) {
  Declared d;
  for (const auto& [key, title] : kSections) d.sections.emplace(key, po::options_description(title));
  auto add = [&](const char* section, const char* name, const po::value_semantic* v, const char* help) {
    // "a|b|c" is one word to Boost's line wrapping, which then cuts it anywhere: spaced out, the
    // help wraps between the values.
    std::string text;
    for (const char* ch = help; *ch; ++ch) text += *ch == '|' ? std::string(" | ") : std::string(1, *ch);
    d.sections.at(section).add_options()(name, v, text.c_str());
    d.section_of[name] = section;
  };
  auto flag = [](bool* p) { return po::value<bool>(p)->default_value(false)->implicit_value(true); };
  // Defaults of real options shown as written (0.9, not 0.90000000000000002).
  auto real = [](double* p, double v) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", v);
    return po::value<double>(p)->default_value(v, text);
  };

  add("run", "help", po::bool_switch(), "print this help and exit");
  add("run", "config", po::value<std::string>(&c.config_file), "INI file with options (command line wins)");
  add("run", "seed", po::value<uint64_t>(&c.seed)->default_value(0), "seed of model init, data order and synthetic data");
  add("run", "dry-run", flag(&c.dry_run), "print the plan (K, steps, slot sizes) and exit");
  add("run", "print-config", flag(&c.print_config), "print the resolved configuration as INI and exit");
  add("run", "print-ids", flag(&c.print_ids),
      "with --dry-run: print the sample ids of every slot (step, micro-step, rank) of the first epoch");
  add("run", "deterministic", flag(&c.deterministic),
      "deterministic algorithms (ATen, cuDNN, cuBLAS): bit-identical GPU runs and resumes, at some speed");
  add("run", "cuda-graphs", flag(&c.cuda_graphs),
      "capture the micro-step (forward, loss, backward) in a CUDA graph and replay it for the steady micro-batch "
      "shape (other shapes run eagerly). GPU only; not with SyncBatchNorm or bn-momentum-unit = window");

  add("data", "dataset", po::value<std::string>(&r.dataset)->default_value("fashion-mnist"),
      "fashion-mnist|regression|bce-toy|sequence|npy (x.npy, y.npy in --data-dir: NumPy arrays of any shape and "
      "dtype, memory-mapped)|tokens (llm.c token shards *train*.bin, *val*.bin in --data-dir)");
  add("data", "eot-token", po::value<int64_t>(&c.eot_token)->default_value(-1),
      "tokens: the end-of-text id that starts each document (-1: 50256 for GPT-2 tokens, else 256)");
  add("data", "data-dir", po::value<std::string>(&c.data_dir)->default_value("/usr/share/datasets/fashion-mnist"),
      "folder with the Fashion-MNIST IDX .gz files, or with x.npy, y.npy [, mask.npy, test_x.npy, test_y.npy] for npy");
  add("data", "prefetch", po::value<int64_t>(&c.prefetch)->default_value(2),
      "micro-batches a background thread gathers ahead of training (on a GPU: into pinned memory, copied on "
      "a copy stream); 0 gathers each in the training loop. Results do not depend on it");
  add("data", "data-on-device", flag(&c.data_on_device),
      "keep the training set on the GPU (gathered once; micro-batches are gathered there; refused if it needs "
      "more than half the free GPU memory). No effect on the CPU. Results do not depend on it");
  add("data", "samples", po::value<int64_t>(&c.samples)->default_value(1000), "training samples of a synthetic dataset");
  add("data", "test-samples", po::value<int64_t>(&c.test_samples)->default_value(0),
      "held-out samples of a synthetic dataset (0: none)");

  add("model", "model", po::value<std::string>(&r.model)->default_value("fmnist-cnn"),
      "mlp|seed-convnet|fmnist-cnn|seq-gru|resnet18 (basic blocks, for 28x28 or 32x32 images)|torchscript (a "
      "module saved from Python, --model-file)|gpt (decoder: --layers, --heads, --hidden width, --context)|gpt2-small "
      "(GPT-2 small's shape: 12 layers, 12 heads, 768 wide, context 1024, 50257 tokens)");
  add("model", "layers", po::value<int64_t>(&c.layers)->default_value(2), "gpt: transformer blocks");
  add("model", "heads", po::value<int64_t>(&c.heads)->default_value(4), "gpt: attention heads (--hidden must be a multiple)");
  add("model", "context", po::value<int64_t>(&c.context)->default_value(64),
      "gpt: most tokens per sample; --dataset tokens cuts documents into pieces of this many");
  add("model", "model-file", po::value<std::string>(&c.model_file)->default_value(""),
      "torchscript: the file of torch.jit.script(model).save(FILE) or torch.jit.trace(model, x).save(FILE)");
  add("model", "norm", po::value<std::string>(&r.norm)->default_value("none"),
      "normalization in fmnist-cnn and resnet18: none|batch (statistics per micro-batch)|syncbatch (per micro-step across "
      "ranks)|group (batch-independent)");
  add("model", "channels-last", flag(&c.channels_last), "resnet18: channels-last (NHWC) weights and inputs");
  add("model", "loss", po::value<std::string>(&r.loss)->default_value("auto"),
      "auto (the dataset's own; npy: cross-entropy for integer targets, token-cross-entropy for integer "
      "sequences, mse for floating-point ones)|cross-entropy|bce (on logits; on probabilities for seed-convnet)|"
      "mse|token-cross-entropy");
  add("model", "bn-momentum-unit", po::value<std::string>(&r.bn_momentum_unit)->default_value("micro-step"),
      "BatchNorm running statistics: momentum per micro-step (PyTorch) or per window (1-(1-m)^(1/K) per forward)");
  add("model", "dtype", po::value<std::string>(&r.dtype)->default_value("float32"), "float32|float64");
  add("model", "hidden", po::value<int64_t>(&c.hidden)->default_value(64), "hidden width of mlp and seq-gru");

  add("batch", "global-batch", po::value<int64_t>(&c.global_batch)->default_value(64),
      "B: samples per optimizer step over all ranks and micro-steps");
  add("batch", "micro-batch", po::value<int64_t>(&c.micro_batch)->default_value(64),
      "m: most samples per forward/backward on one rank; K = ceil(B / (W*m))");
  add("batch", "epochs", po::value<int64_t>(&c.epochs)->default_value(1), "passes over the training set");
  add("batch", "max-steps", po::value<int64_t>(&c.max_steps)->default_value(0),
      "stop after this many optimizer steps (0: no limit)");
  add("batch", "drop-last", flag(&c.drop_last), "drop the short last step of each epoch (default: keep it)");
  add("batch", "shuffle", po::value<bool>(&c.shuffle)->default_value(true)->implicit_value(true),
      "draw a new sample order each epoch (--shuffle=false: file order)");

  add("optim", "optimizer", po::value<std::string>(&r.optimizer)->default_value("sgd"), "sgd|adam|adamw");
  add("optim", "lr", real(&c.lr, 0.01), "learning rate (peak, with a schedule)");
  add("optim", "momentum", real(&c.momentum, 0.0), "SGD momentum");
  add("optim", "nesterov", flag(&c.nesterov), "SGD Nesterov momentum (needs momentum > 0)");
  add("optim", "weight-decay", real(&c.weight_decay, 0.0),
      "L2 penalty (sgd, adam) or decoupled decay (adamw)");
  add("optim", "beta1", real(&c.beta1, 0.9), "Adam/AdamW beta1");
  add("optim", "beta2", real(&c.beta2, 0.999), "Adam/AdamW beta2");
  add("optim", "eps", real(&c.eps, 1e-8), "Adam/AdamW epsilon");
  add("optim", "clip-grad-norm", real(&c.clip_grad_norm, 0.0),
      "clip the global gradient L2 norm to this (0: off)");

  add("schedule", "lr-schedule", po::value<std::string>(&r.lr_schedule)->default_value("constant"),
      "constant|step|cosine (cosine: linear warm-up then cosine to min-lr)");
  add("schedule", "warmup-steps", po::value<int64_t>(&c.warmup_steps)->default_value(0),
      "linear warm-up steps (any schedule)");
  add("schedule", "lr-step-size", po::value<int64_t>(&c.lr_step_size)->default_value(1000),
      "step schedule: decay every this many optimizer steps");
  add("schedule", "lr-gamma", real(&c.lr_gamma, 0.1), "step schedule: decay factor");
  add("schedule", "min-lr", real(&c.min_lr, 0.0), "cosine schedule: final learning rate");

  add("amp", "precision", po::value<std::string>(&r.precision)->default_value("fp32"),
      "forward pass under autocast: fp32 (off)|bf16|fp16; parameters and gradients stay float32");
  add("amp", "grad-scaler", po::value<std::string>(&r.grad_scaler)->default_value("auto"),
      "loss scaling: auto (on for fp16)|on|off");
  add("amp", "scaler-init", real(&c.scaler_init, 65536.0), "initial loss scale");
  add("amp", "scaler-growth-interval", po::value<int64_t>(&c.scaler_growth_interval)->default_value(2000),
      "grow the scale after this many steps without inf/NaN");
  add("amp", "scaler-growth-factor", real(&c.scaler_growth_factor, 2.0),
      "factor the scale grows by");
  add("amp", "scaler-backoff-factor", real(&c.scaler_backoff_factor, 0.5),
      "factor the scale shrinks by after inf/NaN");
  add("amp", "nonfinite", po::value<std::string>(&r.nonfinite)->default_value("error"),
      "without a scaler, an inf/NaN gradient: error (stop, naming the parameter)|skip (skip the step)");
  add("dist", "device", po::value<std::string>(&r.device)->default_value("cpu"),
      "cpu|cuda|auto (cuda: GPU = local rank)");
  add("dist", "backend", po::value<std::string>(&r.backend)->default_value("auto"),
      "gradient transport: auto (self at 1 rank, nccl on cuda, mpi on cpu)|self|mpi|nccl");

  add("dist", "bucket-mb", real(&c.bucket_mb, 25.0),
      "gradient all-reduce bucket size in MB");
  add("dist", "timeout", po::value<double>(&c.timeout)->default_value(600, "600"),
      "seconds a rank waits in one collective; a rank that does not arrive in time ends the job (exit 4)");
  add("dist", "overlap", po::value<bool>(&c.overlap)->default_value(true)->implicit_value(true),
      "start each bucket's all-reduce during the window's last backward (--overlap=false: after it)");
  add("output", "metrics", po::value<std::string>(&c.metrics)->default_value(""),
      "JSON-lines metrics file (one record per step, a final record); auto: "
      "out/<INI stem>-<hash of the training options>.metrics.jsonl, one file per distinct run");
  add("output", "tensorboard-dir", po::value<std::string>(&c.tensorboard_dir)->default_value(""),
      "also write TensorBoard event files (loss, lr, samples/s, grad norm, scale, test metrics) here");
  add("output", "save-weights", po::value<std::string>(&c.save_weights)->default_value(""),
      "write the final weights to this safetensors file");
  add("output", "save-init-weights", po::value<std::string>(&c.save_init_weights)->default_value(""),
      "write the initial weights to this safetensors file");
  add("output", "init-weights", po::value<std::string>(&c.init_weights)->default_value(""),
      "start from the weights in this safetensors file");
  add("output", "checkpoint-dir", po::value<std::string>(&c.checkpoint_dir)->default_value(""),
      "folder of checkpoints (step-N subfolders); written at the end and every --checkpoint-every steps");
  add("output", "checkpoint-every", po::value<int64_t>(&c.checkpoint_every)->default_value(0),
      "write a checkpoint every N optimizer steps (0: only at the end)");
  add("output", "keep-last", po::value<int64_t>(&c.keep_last)->default_value(3),
      "keep the newest N checkpoints (0: keep all)");
  add("output", "resume", po::value<std::string>(&c.resume)->default_value(""),
      "auto (newest checkpoint in --checkpoint-dir, fresh start if none) or the path of a step-N folder");
  add("output", "log-every", po::value<int64_t>(&c.log_every)->default_value(0),
      "print a log line every N optimizer steps (0: progress line and epoch lines only)");
  add("output", "gpu-busy-steps", po::value<int64_t>(&c.gpu_busy_steps)->default_value(0),
      "measure the GPU-busy fraction (device activity over wall time, Kineto/CUPTI) over the run's last N "
      "windows (never its first; an epoch's end closes it); printed and in the final metrics record (gpu_busy)");
  add("output", "eval", po::value<bool>(&c.eval)->default_value(true)->implicit_value(true),
      "evaluate on the test set after every epoch (--eval=false: off)");
  add("output", "quiet", flag(&c.quiet), "print no progress, log or epoch lines (metrics are still written)");
  return d;
}

po::options_description all_options(const Declared& d) {
  po::options_description all("vdp-train options");
  for (const auto& [key, title] : kSections) all.add(d.sections.at(key));
  return all;
}

std::string help_text(const Declared& d, const std::string& prog) {
  std::ostringstream os;
  os << "usage: " << prog << " [FILE.ini | --config FILE.ini] [options]\n"
     << "       mpirun -np W " << prog << " ...   (W ranks; each accumulates K micro-batches per step)\n\n"
        "Every option can also be set in the INI file, as 'name = value' at the top or in the\n"
        "[section] named below in brackets; the command line wins over the file.\n";
  for (const auto& [key, title] : kSections) os << "\n[" << key << "] " << d.sections.at(key);
  return os.str();
}

// Turns Boost's exceptions into one line that says what to do.
[[noreturn]] void rethrow_boost(const po::error& e, const std::string& where, const std::string& prog) {
  std::string msg = e.what();
  if (dynamic_cast<const po::too_many_positional_options_error*>(&e))
    VDP_FAIL(where, "more than one argument without an option name (the only one allowed is the INI file, as in ",
             prog, " FILE.ini; options start with --)");
  if (dynamic_cast<const po::unknown_option*>(&e))
    VDP_FAIL(where, msg, " (run ", prog, " --help for the list of options)");
  if (dynamic_cast<const po::invalid_option_value*>(&e) || dynamic_cast<const po::invalid_bool_value*>(&e))
    VDP_FAIL(where, msg, " (see ", prog, " --help for the expected type)");
  VDP_FAIL(where, msg, " (see ", prog, " --help)");
}

constexpr int64_t kMaxCount = 1000000000;
constexpr int64_t kMaxSteps = 1000000000000;

template <typename T>
void require(bool ok, const char* option, const T& value, const char* allowed) {
  VDP_CHECK(ok, "invalid value for --", option, ": ", value, " (", allowed, ")");
}

// Nearest existing ancestor of `p` (p itself if it exists).
std::filesystem::path existing_ancestor(std::filesystem::path p) {
  namespace fs = std::filesystem;
  std::error_code ec;
  p = fs::absolute(p, ec);
  while (!p.empty() && !fs::exists(p, ec) && p != p.parent_path()) p = p.parent_path();
  return p;
}

// Every output is checked before anything is created (README, "Exit codes": bad input writes
// nothing): files must not be folders, folders must not be files, the place each would be created
// in must be a writable folder, and no two outputs may be the same path.
// --metrics auto: out/<INI file stem>-<8 hex digits>.metrics.jsonl, the digits a hash of every
// option that shapes the training (not the outputs, epochs or max-steps, so a resumed or extended run
// keeps its file), so runs with other settings do not overwrite each other's metrics.
std::string auto_metrics_path(const Config& c) {
  Config t = c;
  t.config_file.clear();
  t.metrics = t.tensorboard_dir = t.save_weights = t.save_init_weights = t.checkpoint_dir = t.resume = "";
  t.epochs = t.max_steps = t.checkpoint_every = t.keep_last = t.log_every = t.gpu_busy_steps = 0;
  t.quiet = t.dry_run = t.print_config = t.print_ids = false;
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  std::string ini = config_to_ini(t);
  // Speed-only options do not shape the training.
  for (const char* key : {"\nprefetch = ", "\ndata-on-device = ", "\ncuda-graphs = "}) {
    const size_t at = ini.find(key);
    if (at != std::string::npos) ini.erase(at, ini.find('\n', at + 1) - at);
  }
  for (unsigned char ch : ini) h = (h ^ ch) * 1099511628211ull;
  const std::string stem = c.config_file.empty() ? "run" : std::filesystem::path(c.config_file).stem().string();
  char hex[17];
  std::snprintf(hex, sizeof hex, "%08llx", static_cast<unsigned long long>(h & 0xffffffffull));
  return "out/" + stem + "-" + hex + ".metrics.jsonl";
}

void check_output_paths(const Config& c) {
  namespace fs = std::filesystem;
  struct Out {
    const char* option;
    const std::string* path;
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
    std::error_code ec;
    const fs::path p(*o.path);
    const auto st = fs::status(p, ec);
    if (fs::exists(st)) {
      if (o.folder)
        VDP_CHECK(fs::is_directory(st), "invalid value for --", o.option, ": '", *o.path,
                  "' exists and is not a folder (give a folder path)");
      else
        VDP_CHECK(!fs::is_directory(st), "invalid value for --", o.option, ": '", *o.path,
                  "' is a folder (give a file path, e.g. ", (p / (std::string(o.option) == "metrics" ? "metrics.jsonl" : "weights.safetensors")).string(), ")");
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

void validate(Config& c, const RawEnums& r, bool own_task) {
  c.dataset = kDatasets.parse("dataset", r.dataset);
  c.model = kModels.parse("model", r.model);
  c.norm = kNorms.parse("norm", r.norm);
  c.loss = kLosses.parse("loss", r.loss);
  c.bn_momentum_unit = kMomentumUnits.parse("bn-momentum-unit", r.bn_momentum_unit);
  c.dtype = kDTypes.parse("dtype", r.dtype);
  c.optimizer = kOptimizers.parse("optimizer", r.optimizer);
  c.lr_schedule = kSchedules.parse("lr-schedule", r.lr_schedule);
  c.device = kDevices.parse("device", r.device);
  c.backend = kBackends.parse("backend", r.backend);
  c.precision = kPrecisions.parse("precision", r.precision);
  c.grad_scaler = kScalerModes.parse("grad-scaler", r.grad_scaler);
  c.nonfinite = kNonFinite.parse("nonfinite", r.nonfinite);
  VDP_CHECK(c.precision == Precision::Fp32 || c.dtype == DType::Float32, "invalid value for --precision: ",
            r.precision, " with --dtype ", r.dtype, " (autocast keeps parameters in float32: use --dtype float32)");
  require(c.scaler_init > 0 && std::isfinite(c.scaler_init), "scaler-init", c.scaler_init, "must be > 0");
  require(c.scaler_growth_interval >= 1, "scaler-growth-interval", c.scaler_growth_interval, "must be >= 1");
  require(c.scaler_growth_factor > 1, "scaler-growth-factor", c.scaler_growth_factor, "must be > 1");
  require(c.scaler_backoff_factor > 0 && c.scaler_backoff_factor < 1, "scaler-backoff-factor",
          c.scaler_backoff_factor, "must be in (0, 1)");

  require(c.global_batch >= 1, "global-batch", c.global_batch, "must be an integer >= 1");
  require(c.micro_batch >= 1, "micro-batch", c.micro_batch, "must be an integer >= 1");
  require(c.epochs >= 1, "epochs", c.epochs, "must be an integer >= 1");
  require(c.max_steps >= 0, "max-steps", c.max_steps, "must be >= 0; 0 means no limit");
  require(c.samples >= 1, "samples", c.samples, "must be an integer >= 1");
  require(c.test_samples >= 0, "test-samples", c.test_samples, "must be >= 0");
  require(c.hidden >= 1, "hidden", c.hidden, "must be an integer >= 1");
  require(std::isfinite(c.lr) && c.lr >= 0, "lr", c.lr, "must be a finite number >= 0");
  require(std::isfinite(c.momentum) && c.momentum >= 0 && c.momentum < 1, "momentum", c.momentum, "must be in [0, 1)");
  require(!c.nesterov || c.momentum > 0, "nesterov", "true", "Nesterov needs --momentum > 0");
  require(c.optimizer == OptimizerKind::Sgd || c.momentum == 0, "momentum", c.momentum,
          "momentum applies to --optimizer sgd only; use --beta1 for adam/adamw");
  require(std::isfinite(c.weight_decay) && c.weight_decay >= 0, "weight-decay", c.weight_decay, "must be >= 0");
  require(c.beta1 >= 0 && c.beta1 < 1, "beta1", c.beta1, "must be in [0, 1)");
  require(c.beta2 >= 0 && c.beta2 < 1, "beta2", c.beta2, "must be in [0, 1)");
  require(c.eps > 0 && c.eps < 1, "eps", c.eps, "must be in (0, 1)");
  require(std::isfinite(c.clip_grad_norm) && c.clip_grad_norm >= 0, "clip-grad-norm", c.clip_grad_norm,
          "must be >= 0; 0 turns clipping off");
  require(c.warmup_steps >= 0, "warmup-steps", c.warmup_steps, "must be >= 0");
  require(c.lr_step_size >= 1, "lr-step-size", c.lr_step_size, "must be an integer >= 1");
  require(std::isfinite(c.min_lr), "min-lr", c.min_lr, "must be a finite number");
  require(c.lr_gamma > 0 && c.lr_gamma <= 1, "lr-gamma", c.lr_gamma, "must be in (0, 1]");
  require(c.min_lr >= 0 && c.min_lr <= c.lr, "min-lr", c.min_lr, "must be in [0, lr]");
  require(c.log_every >= 0, "log-every", c.log_every, "must be >= 0");
  require(c.gpu_busy_steps >= 0 && c.gpu_busy_steps <= 1000000, "gpu-busy-steps", c.gpu_busy_steps,
          "must be in [0, 1000000]");
  require(!c.cuda_graphs || c.device != DeviceKind::Cpu, "cuda-graphs", "true", "captures GPU work: use it with --device cuda");
  require(!c.cuda_graphs || c.bn_momentum_unit != MomentumUnit::Window, "cuda-graphs", "true",
          "cannot follow a BatchNorm momentum that changes per window (bn-momentum-unit = window): a capture "
          "holds the momentum it saw; use bn-momentum-unit = micro-step");
  require(c.gpu_busy_steps == 0 || c.device != DeviceKind::Cpu, "gpu-busy-steps", c.gpu_busy_steps,
          "measures a GPU: use it with --device cuda");
  require(c.bucket_mb >= 0.001 && c.bucket_mb <= 1e5, "bucket-mb", c.bucket_mb, "must be in [0.001, 100000]");
  require(c.prefetch >= 0 && c.prefetch <= 64, "prefetch", c.prefetch, "must be in [0, 64]");
  require(c.timeout >= 0.1 && c.timeout <= 1e6, "timeout", c.timeout, "seconds, must be in [0.1, 1000000]");
  // Upper bounds keep every product of counts (steps, samples, elements) far from int64 overflow
  // and turn absurd sizes into one line here instead of an allocation failure later.
  require(c.global_batch <= kMaxCount, "global-batch", c.global_batch, "must be at most 1000000000");
  require(c.micro_batch <= kMaxCount, "micro-batch", c.micro_batch, "must be at most 1000000000");
  require(c.samples <= 10000000, "samples", c.samples, "must be at most 10000000 (synthetic data lives in memory)");
  require(c.test_samples <= 10000000, "test-samples", c.test_samples, "must be at most 10000000");
  require(c.hidden <= 16384, "hidden", c.hidden, "must be at most 16384");
  require(c.epochs <= 1000000, "epochs", c.epochs, "must be at most 1000000");
  require(c.max_steps <= kMaxSteps, "max-steps", c.max_steps, "must be at most 1000000000000");
  require(c.warmup_steps <= kMaxSteps, "warmup-steps", c.warmup_steps, "must be at most 1000000000000");
  require(c.lr_step_size <= kMaxSteps, "lr-step-size", c.lr_step_size, "must be at most 1000000000000");
  require(c.checkpoint_every <= kMaxSteps, "checkpoint-every", c.checkpoint_every, "must be at most 1000000000000");
  require(c.log_every <= kMaxSteps, "log-every", c.log_every, "must be at most 1000000000000");
  require(c.keep_last <= 1000000, "keep-last", c.keep_last, "must be at most 1000000");
  require(c.scaler_growth_interval <= 1000000000, "scaler-growth-interval", c.scaler_growth_interval,
          "must be at most 1000000000");
  require(c.lr <= 1e6, "lr", c.lr, "must be at most 1000000");
  require(std::isfinite(c.scaler_init) && c.scaler_init <= 1e30, "scaler-init", c.scaler_init, "must be at most 1e30");
  require(std::isfinite(c.scaler_growth_factor) && c.scaler_growth_factor <= 1e6, "scaler-growth-factor",
          c.scaler_growth_factor, "must be at most 1000000");
  require(c.checkpoint_every >= 0, "checkpoint-every", c.checkpoint_every, "must be >= 0");
  require(c.keep_last >= 0, "keep-last", c.keep_last, "must be >= 0; 0 keeps all");
  VDP_CHECK(c.checkpoint_every == 0 || !c.checkpoint_dir.empty(), "invalid value for --checkpoint-every: ",
            c.checkpoint_every, " (needs --checkpoint-dir)");
  VDP_CHECK(c.resume != "auto" || !c.checkpoint_dir.empty(), "invalid value for --resume: auto (needs "
            "--checkpoint-dir to look in)");
  VDP_CHECK(c.resume.empty() || c.resume == "auto" || std::filesystem::is_directory(c.resume),
            "invalid value for --resume: '", c.resume, "' is not a checkpoint folder (give a step-N folder or auto)");
  VDP_CHECK(!c.print_ids || c.dry_run, "invalid value for --print-ids: it goes with --dry-run");
  VDP_CHECK(c.resume.empty() || c.init_weights.empty(), "--resume and --init-weights exclude each other (a "
            "checkpoint holds its own weights)");

  // Which models fit which data: the input and output shapes are fixed by the dataset. A program
  // with its own task (vdp::run with make_task) brings its own data and model: nothing to check.
  auto fits = [&](bool ok, const char* allowed) {
    if (c.model == ModelKind::Torchscript) return;  // checked against the data when the model is loaded
    VDP_CHECK(ok, "invalid value for --model: '", r.model, "' does not fit --dataset ", r.dataset, " (use ",
              allowed, ")");
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
    case DatasetKind::Tokens: fits(c.model == ModelKind::Gpt || c.model == ModelKind::Gpt2Small, "gpt or gpt2-small"); break;
  }
  VDP_CHECK(own_task || c.norm == NormKind::None || c.model == ModelKind::FmnistCnn || c.model == ModelKind::Resnet18,
            "invalid value for --norm: '", r.norm,
            "' (normalization layers exist in fmnist-cnn and resnet18 only; use --norm none)");
  VDP_CHECK(c.model != ModelKind::Torchscript || !c.model_file.empty(), "invalid value for --model: torchscript "
            "needs --model-file FILE.pt (a module saved from Python with torch.jit.script(model).save)");
  VDP_CHECK(c.model_file.empty() || c.model == ModelKind::Torchscript, "invalid value for --model-file: it goes "
            "with --model torchscript");
  VDP_CHECK(c.model_file.empty() || std::filesystem::is_regular_file(c.model_file), "invalid value for --model-file: '",
            c.model_file, "' is not a readable file");
  VDP_CHECK(!c.channels_last || c.model == ModelKind::Resnet18, "invalid value for --channels-last: it applies to "
            "--model resnet18 only");

  require(c.context >= 1 && c.context <= 1000000, "context", c.context, "must be in [1, 1000000]");
  require(c.layers >= 1 && c.layers <= 1000, "layers", c.layers, "must be in [1, 1000]");
  require(c.heads >= 1 && c.heads <= 1024, "heads", c.heads, "must be in [1, 1024]");
  require(c.eot_token >= -1 && c.eot_token <= 65535, "eot-token", c.eot_token, "must be -1 or a token id in [0, 65535]");
  VDP_CHECK(c.model != ModelKind::Gpt || c.hidden % c.heads == 0, "invalid value for --hidden: ", c.hidden,
            " (the gpt width must be a multiple of --heads ", c.heads, ")");
  if (!own_task && c.dataset == DatasetKind::Tokens)
    VDP_CHECK(std::filesystem::is_directory(c.data_dir), "invalid value for --data-dir: '", c.data_dir,
              "' is not a directory (--dataset tokens reads llm.c token shards *train*.bin and *val*.bin from it)");
  if (!own_task && c.dataset == DatasetKind::Npy) {
    namespace fs = std::filesystem;
    VDP_CHECK(fs::is_directory(c.data_dir), "invalid value for --data-dir: '", c.data_dir,
              "' is not a directory (--dataset npy reads x.npy and y.npy from the folder --data-dir names)");
    for (const char* f : {"x.npy", "y.npy"})
      VDP_CHECK(fs::is_regular_file(fs::path(c.data_dir) / f), "invalid value for --data-dir: '", c.data_dir,
                "' has no ", f, " (--dataset npy needs x.npy and y.npy, written by numpy.save)");
  }
  if (!own_task && c.dataset == DatasetKind::FashionMnist) {
    namespace fs = std::filesystem;
    VDP_CHECK(fs::is_directory(c.data_dir), "invalid value for --data-dir: '", c.data_dir,
              "' is not a directory (install the Debian package dataset-fashion-mnist, or point --data-dir "
              "at a folder holding the four Fashion-MNIST .gz files)");
    for (const char* f : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                          "t10k-labels-idx1-ubyte.gz"}) {
      fs::path p = fs::path(c.data_dir) / f;
      VDP_CHECK(fs::is_regular_file(p), "invalid value for --data-dir: '", c.data_dir, "' has no ", f,
                " (install dataset-fashion-mnist, or point --data-dir at a folder holding the four .gz files)");
    }
  }
  for (const auto& [opt, path] : {std::pair<const char*, const std::string*>{"init-weights", &c.init_weights}}) {
    VDP_CHECK(path->empty() || std::filesystem::is_regular_file(*path), "invalid value for --", opt, ": '", *path,
              "' is not a readable file (give the path of a .safetensors file written by --save-weights)");
  }
  if (c.metrics == "auto") c.metrics = auto_metrics_path(c);
  check_output_paths(c);
}

}  // namespace

ParseResult parse_config(int argc, const char* const* argv, const ParseSettings& settings) {
  const std::string& prog = settings.program;
  ParseResult out;
  Config& c = out.config;
  RawEnums raw;
  Declared d = declare(c, raw);
  po::options_description all = all_options(d);

  po::variables_map vm;
  try {
    // The command line is stored first: po::store never overwrites, so it wins over the file.
    // Exact option names only (no prefix guessing: --epoch is not --epochs); one positional
    // argument, the INI file (vdp-train FILE.ini means --config FILE.ini).
    po::positional_options_description positional;
    positional.add("config", 1);
    const int style = po::command_line_style::unix_style & ~po::command_line_style::allow_guessing;
    po::store(po::command_line_parser(argc, argv).options(all).positional(positional).style(style).run(), vm);
  } catch (const po::error& e) {
    rethrow_boost(e, "command line: ", prog);
  }
  if (vm.count("help") && vm["help"].as<bool>()) {
    out.exit_now = true;
    out.text = help_text(d, prog);
    return out;
  }
  if (vm.count("config")) {
    const std::string file = vm["config"].as<std::string>();
    std::vector<IniEntry> entries = read_ini(file);
    po::parsed_options parsed(&all);
    for (const IniEntry& e : entries) {
      auto it = d.section_of.find(e.key);
      VDP_CHECK(it != d.section_of.end() && e.key != "config" && e.key != "help", file, ":", e.line,
                ": unknown option '", e.key, "' (run ", prog, " --help for the list of options)");
      VDP_CHECK(e.section.empty() || e.section == it->second, file, ":", e.line, ": option '", e.key,
                "' belongs in section [", it->second, "], not [", e.section, "]");
      po::option o(e.key, {e.value});
      o.original_tokens = {e.key, e.value};
      parsed.options.push_back(o);
    }
    try {
      po::store(parsed, vm);
    } catch (const po::error& e) {
      rethrow_boost(e, file + ": ", prog);
    }
  }
  // The program's own defaults (vdp::run's RunSpec::defaults) come last: under the command line and
  // the file, over the built-in defaults.
  if (!settings.defaults.empty()) {
    po::parsed_options parsed(&all);
    for (const auto& [key, value] : settings.defaults) {
      VDP_CHECK(d.section_of.count(key) && key != "config" && key != "help", prog, ": default for unknown option '",
                key, "' (the program's RunSpec::defaults name options without the leading --)");
      po::option o(key, {value});
      o.original_tokens = {key, value};
      parsed.options.push_back(o);
    }
    try {
      po::store(parsed, vm);
    } catch (const po::error& e) {
      rethrow_boost(e, prog + " defaults: ", prog);
    }
  }
  try {
    po::notify(vm);
  } catch (const po::error& e) {
    rethrow_boost(e, "", prog);
  }
  validate(c, raw, settings.own_task);
  return out;
}

std::string config_to_ini(const Config& c) {
  std::ostringstream os;
  os.precision(17);
  auto b = [](bool v) { return v ? "true" : "false"; };
  os << "[run]\nseed = " << c.seed << "\ndeterministic = " << b(c.deterministic)
     << "\ncuda-graphs = " << b(c.cuda_graphs) << "\n";
  os << "\n[data]\ndataset = " << to_string(c.dataset) << "\ndata-dir = " << c.data_dir << "\nsamples = " << c.samples
     << "\ntest-samples = " << c.test_samples << "\neot-token = " << c.eot_token
     << "\nprefetch = " << c.prefetch << "\ndata-on-device = " << b(c.data_on_device) << "\n";
  os << "\n[model]\nmodel = " << to_string(c.model) << "\nnorm = " << to_string(c.norm)
     << "\nloss = " << to_string(c.loss) << "\nchannels-last = " << b(c.channels_last)
     << "\nmodel-file = " << c.model_file << "\nlayers = " << c.layers << "\nheads = " << c.heads
     << "\ncontext = " << c.context << "\nbn-momentum-unit = " << to_string(c.bn_momentum_unit) << "\ndtype = " << to_string(c.dtype) << "\nhidden = " << c.hidden << "\n";
  os << "\n[batch]\nglobal-batch = " << c.global_batch << "\nmicro-batch = " << c.micro_batch
     << "\nepochs = " << c.epochs << "\nmax-steps = " << c.max_steps << "\ndrop-last = " << b(c.drop_last)
     << "\nshuffle = " << b(c.shuffle) << "\n";
  os << "\n[optim]\noptimizer = " << to_string(c.optimizer) << "\nlr = " << c.lr << "\nmomentum = " << c.momentum
     << "\nnesterov = " << b(c.nesterov) << "\nweight-decay = " << c.weight_decay << "\nbeta1 = " << c.beta1
     << "\nbeta2 = " << c.beta2 << "\neps = " << c.eps << "\nclip-grad-norm = " << c.clip_grad_norm << "\n";
  os << "\n[schedule]\nlr-schedule = " << to_string(c.lr_schedule) << "\nwarmup-steps = " << c.warmup_steps
     << "\nlr-step-size = " << c.lr_step_size << "\nlr-gamma = " << c.lr_gamma << "\nmin-lr = " << c.min_lr << "\n";
  os << "\n[amp]\nprecision = " << to_string(c.precision) << "\ngrad-scaler = " << to_string(c.grad_scaler)
     << "\nscaler-init = " << c.scaler_init << "\nscaler-growth-interval = " << c.scaler_growth_interval
     << "\nscaler-growth-factor = " << c.scaler_growth_factor << "\nscaler-backoff-factor = "
     << c.scaler_backoff_factor << "\nnonfinite = " << to_string(c.nonfinite) << "\n";
  os << "\n[dist]\ndevice = " << to_string(c.device) << "\nbackend = " << to_string(c.backend)
     << "\nbucket-mb = " << c.bucket_mb << "\noverlap = " << b(c.overlap) << "\ntimeout = " << c.timeout << "\n";
  os << "\n[output]\nmetrics = " << c.metrics << "\ntensorboard-dir = " << c.tensorboard_dir << "\nsave-weights = " << c.save_weights
     << "\nsave-init-weights = " << c.save_init_weights << "\ninit-weights = " << c.init_weights
     << "\ncheckpoint-dir = " << c.checkpoint_dir << "\ncheckpoint-every = " << c.checkpoint_every
     << "\nkeep-last = " << c.keep_last << "\nresume = " << c.resume << "\nlog-every = " << c.log_every << "\ngpu-busy-steps = " << c.gpu_busy_steps << "\neval = " << b(c.eval) << "\nquiet = " << b(c.quiet) << "\n";
  return os.str();
}

const char* to_string(DatasetKind v) { return kDatasets.name(v); }
const char* to_string(ModelKind v) { return kModels.name(v); }
const char* to_string(NormKind v) { return kNorms.name(v); }
const char* to_string(LossKind v) { return kLosses.name(v); }
const char* to_string(MomentumUnit v) { return kMomentumUnits.name(v); }
const char* to_string(OptimizerKind v) { return kOptimizers.name(v); }
const char* to_string(ScheduleKind v) { return kSchedules.name(v); }
const char* to_string(DType v) { return kDTypes.name(v); }
const char* to_string(DeviceKind v) { return kDevices.name(v); }
const char* to_string(BackendKind v) { return kBackends.name(v); }
const char* to_string(Precision v) { return kPrecisions.name(v); }
const char* to_string(ScalerMode v) { return kScalerModes.name(v); }
const char* to_string(NonFinite v) { return kNonFinite.name(v); }

}  // namespace vdp
