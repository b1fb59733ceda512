// The option table: every option of vdp-train once, with its section, type, default, help, range and
// traits (include/vdp/config/config.h). The parser (parse.cpp), the checks (validate.cpp), the INI
// writer, rank agreement, the resume check, the --metrics auto hash and the options reference are all
// derived from these rows; adding an option is adding a row (and its Config field).
#include "option_rows.h"

#include <cstdio>
#include <sstream>
#include <utility>

#include "vdp/core/error.h"

namespace vdp {
namespace {

// The allowed names of one enum, in one place; messages and --help list them.
template <typename E>
struct EnumNames {
  std::vector<std::pair<const char*, E>> names;
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
const EnumNames<ScheduleKind> kSchedules{
    {{"constant", ScheduleKind::Constant}, {"step", ScheduleKind::Step}, {"cosine", ScheduleKind::Cosine}}};
const EnumNames<Precision> kPrecisions{{{"fp32", Precision::Fp32}, {"bf16", Precision::Bf16}, {"fp16", Precision::Fp16}}};
const EnumNames<ScalerMode> kScalerModes{{{"auto", ScalerMode::Auto}, {"on", ScalerMode::On}, {"off", ScalerMode::Off}}};
const EnumNames<NonFinite> kNonFinite{{{"error", NonFinite::Error}, {"skip", NonFinite::Skip}}};
const EnumNames<DType> kDTypes{{{"float32", DType::Float32}, {"float64", DType::Float64}}};
const EnumNames<DeviceKind> kDevices{{{"auto", DeviceKind::Auto}, {"cpu", DeviceKind::Cpu}, {"cuda", DeviceKind::Cuda}}};
const EnumNames<BackendKind> kBackends{
    {{"auto", BackendKind::Auto}, {"self", BackendKind::Self}, {"mpi", BackendKind::Mpi}, {"nccl", BackendKind::Nccl}}};

template <typename E>
options::ChoiceField choice_of(E Config::*m, const EnumNames<E>& table) {
  options::ChoiceField f;
  for (const auto& [n, e] : table.names) f.choices.emplace_back(n);
  f.get = [m, &table](const Config& c) { return std::string(table.name(c.*m)); };
  f.set = [m, &table](Config& c, const std::string& option, const std::string& text) {
    for (const auto& [n, e] : table.names)
      if (text == n) {
        c.*m = e;
        return;
      }
    std::string allowed;
    for (const auto& [n, e] : table.names) allowed += (allowed.empty() ? "" : "|") + std::string(n);
    VDP_FAIL("invalid value for --", option, ": '", text, "' (allowed: ", allowed, ")");
  };
  return f;
}

constexpr double kMaxCount = 1e9;   // samples and batches
constexpr double kMaxSteps = 1e12;  // steps: far from int64 overflow in every product of counts
constexpr double kMax = std::numeric_limits<double>::max();

using options::Range;
using options::Row;

// Row makers: (section, name, field, default as INI text, range, help, traits).
Row row(const char* section, const char* name, options::Field field, const char* type, const char* def, Range range,
        const char* help, unsigned traits) {
  Row r;
  r.info.section = section;
  r.info.name = name;
  r.info.type = type;
  r.info.default_text = def;
  r.info.range = range.words;
  r.info.help = help;
  r.info.traits = traits;
  if (auto* c = std::get_if<options::ChoiceField>(&field)) r.info.choices = c->choices;
  r.field = std::move(field);
  r.range = range;
  return r;
}
Row flag(const char* s, const char* n, bool Config::*m, const char* help, unsigned t) {
  return row(s, n, m, "flag", "false", {}, help, t);
}
Row boolean(const char* s, const char* n, bool Config::*m, const char* def, const char* help, unsigned t) {
  return row(s, n, m, "bool", def, {}, help, t);
}
Row integer(const char* s, const char* n, int64_t Config::*m, const char* def, Range r, const char* help, unsigned t) {
  return row(s, n, m, "integer", def, r, help, t);
}
Row number(const char* s, const char* n, double Config::*m, const char* def, Range r, const char* help, unsigned t) {
  return row(s, n, m, "number", def, r, help, t);
}
Row text(const char* s, const char* n, std::string Config::*m, const char* def, const char* help, unsigned t) {
  return row(s, n, m, "text", def, {}, help, t);
}
template <typename E>
Row choice(const char* s, const char* n, E Config::*m, const EnumNames<E>& table, const char* def, const char* help,
           unsigned t) {
  return row(s, n, choice_of(m, table), "choice", def, {}, help, t);
}

// --micro-batch: an integer or auto (held as 0).
options::ChoiceField micro_batch_field() {
  options::ChoiceField f;
  f.get = [](const Config& c) { return c.micro_batch == 0 ? std::string("auto") : std::to_string(c.micro_batch); };
  f.set = [](Config& c, const std::string& option, const std::string& text) {
    if (text == "auto") {
      c.micro_batch = 0;
      return;
    }
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(text, &used);
    } catch (const std::logic_error&) {
      used = 0;
    }
    VDP_CHECK(used == text.size() && !text.empty() && v >= 1 && v <= static_cast<long long>(kMaxCount),
              "invalid value for --", option, ": '", text, "' (must be an integer >= 1 and at most 1000000000, or auto)");
    c.micro_batch = v;
  };
  return f;
}

constexpr unsigned A = kAgree, S = kShapes, R = kResume, X = kAction;

// Every option, once. Traits: A rank agreement, S shapes training (the --metrics auto hash), R must
// match on resume, X an action (not a setting: not in INI files). Options with none of A, S may
// differ per rank: outputs and how much is printed.
std::vector<Row> make_rows() {
  bool Config::*no_flag = nullptr;  // --help: parsed as a switch, held by the parser
  return {
      row("run", "help", no_flag, "flag", "false", {}, "print this help and exit", X),
      text("run", "config", &Config::config_file, "", "INI file with options (command line wins)", X),
      row("run", "seed", &Config::seed, "integer", "0", {}, "seed of model init, data order and synthetic data",
          A | S | R),
      flag("run", "dry-run", &Config::dry_run, "print the plan (K, steps, slot sizes) and exit", X),
      flag("run", "print-config", &Config::print_config, "print the resolved configuration as INI and exit", X),
      flag("run", "print-ids", &Config::print_ids,
           "with --dry-run: print the sample ids of every slot (step, micro-step, rank) of the first epoch", X),
      flag("run", "deterministic", &Config::deterministic,
           "deterministic algorithms (ATen, cuDNN, cuBLAS): bit-identical GPU runs and resumes, at some speed", A | S),
      flag("run", "cuda-graphs", &Config::cuda_graphs,
           "capture the micro-step (forward, loss, backward) in a CUDA graph and replay it for the steady micro-batch "
           "shape (other shapes run eagerly). GPU only; not with SyncBatchNorm or bn-momentum-unit = window",
           A),

      choice("data", "dataset", &Config::dataset, kDatasets, "fashion-mnist",
             "fashion-mnist|regression|bce-toy|sequence|npy (x.npy, y.npy in --data-dir: NumPy arrays of any shape "
             "and dtype, memory-mapped)|tokens (llm.c token shards *train*.bin, *val*.bin in --data-dir)",
             A | S),
      integer("data", "eot-token", &Config::eot_token, "-1", {-1, 65535, false, false, "-1 or a token id in [0, 65535]"},
              "tokens: the end-of-text id that starts each document (-1: 50256 for GPT-2 tokens, else 256)", A | S),
      text("data", "data-dir", &Config::data_dir, "/usr/share/datasets/fashion-mnist",
           "folder with the Fashion-MNIST IDX .gz files, or with x.npy, y.npy [, mask.npy, test_x.npy, test_y.npy] "
           "for npy (may differ per rank: the data itself is compared)",
           S),
      integer("data", "prefetch", &Config::prefetch, "2", {0, 64, false, false, "must be in [0, 64]"},
              "micro-batches a background thread gathers ahead of training (on a GPU: into pinned memory, copied on "
              "a copy stream); 0 gathers each in the training loop. Results do not depend on it",
              A),
      flag("data", "data-on-device", &Config::data_on_device,
           "keep the training set on the GPU (gathered once; micro-batches are gathered there; refused if it needs "
           "more than half the free GPU memory). No effect on the CPU. Results do not depend on it",
           A),
      integer("data", "samples", &Config::samples, "1000",
              {1, 1e7, false, false, "must be an integer >= 1 and at most 10000000 (synthetic data lives in memory)"},
              "training samples of a synthetic dataset", A | S),
      integer("data", "test-samples", &Config::test_samples, "0",
              {0, 1e7, false, false, "must be >= 0 and at most 10000000"},
              "held-out samples of a synthetic dataset (0: none)", A | S),

      choice("model", "model", &Config::model, kModels, "fmnist-cnn",
             "mlp|seed-convnet|fmnist-cnn|seq-gru|resnet18 (basic blocks, for 28x28 or 32x32 images)|torchscript (a "
             "module saved from Python, --model-file)|gpt (decoder: --layers, --heads, --hidden width, --context)|"
             "gpt2-small (GPT-2 small's shape: 12 layers, 12 heads, 768 wide, context 1024, 50257 tokens)",
             A | S),
      integer("model", "layers", &Config::layers, "2", {1, 1000, false, false, "must be in [1, 1000]"},
              "gpt: transformer blocks", A | S),
      integer("model", "heads", &Config::heads, "4", {1, 1024, false, false, "must be in [1, 1024]"},
              "gpt: attention heads (--hidden must be a multiple)", A | S),
      integer("model", "context", &Config::context, "64", {1, 1e6, false, false, "must be in [1, 1000000]"},
              "gpt: most tokens per sample; --dataset tokens cuts documents into pieces of this many", A | S),
      text("model", "model-file", &Config::model_file, "",
           "torchscript: the file of torch.jit.script(model).save(FILE) or torch.jit.trace(model, x).save(FILE)", A | S),
      choice("model", "norm", &Config::norm, kNorms, "none",
             "normalization in fmnist-cnn and resnet18: none|batch (statistics per micro-batch)|syncbatch (per "
             "micro-step across ranks)|group (batch-independent)",
             A | S),
      flag("model", "recompute", &Config::recompute,
           "activation recomputation: the model's blocks (gpt h.N, resnet18 layer1..4, mlp fc1..fc3) keep only their "
           "inputs and run again in backward; the same gradients bit for bit, less memory, about one more forward. "
           "May differ per rank. Not with --norm batch|syncbatch or --cuda-graphs",
           0),
      flag("model", "channels-last", &Config::channels_last, "resnet18: channels-last (NHWC) weights and inputs", A | S),
      choice("model", "loss", &Config::loss, kLosses, "auto",
             "auto (the dataset's own; npy: cross-entropy for integer targets, token-cross-entropy for integer "
             "sequences, mse for floating-point ones)|cross-entropy|bce (on logits; on probabilities for "
             "seed-convnet)|mse|token-cross-entropy",
             A | S),
      choice("model", "bn-momentum-unit", &Config::bn_momentum_unit, kMomentumUnits, "micro-step",
             "BatchNorm running statistics: momentum per micro-step (PyTorch) or per window (1-(1-m)^(1/K) per "
             "forward)",
             A | S),
      choice("model", "dtype", &Config::dtype, kDTypes, "float32", "float32|float64", A | S),
      integer("model", "hidden", &Config::hidden, "64", {1, 16384, false, false, "must be an integer >= 1 and at most 16384"},
              "hidden width of mlp and seq-gru", A | S),

      integer("batch", "global-batch", &Config::global_batch, "64",
              {1, kMaxCount, false, false, "must be an integer >= 1 and at most 1000000000"},
              "B: samples per optimizer step over all ranks and micro-steps", A | S | R),
      row("batch", "micro-batch", micro_batch_field(), "integer|auto", "64",
          {1, kMaxCount, false, false, "an integer >= 1 and at most 1000000000, or auto"},
          "m: most samples per forward/backward on one rank; K = ceil(B / (W*m)). auto: the largest m whose "
          "micro-step fits --memory-budget, measured before training (each rank also keeps the largest chunk it "
          "fits); saved in checkpoints",
          A | S),
      text("batch", "memory-budget", &Config::memory_budget, "0.8",
           "--micro-batch auto: memory this rank may use for the model, its gradients, optimizer state and a "
           "micro-step: a fraction in (0, 1] of the device's memory (CPU: of the host's available memory, shared by "
           "the ranks on the host) or bytes (e.g. 6G, 512M). May differ per rank",
           0),
      flag("batch", "search-again", &Config::search_again,
           "--micro-batch auto on resume: search again instead of taking the checkpoint's choice", 0),
      integer("batch", "chunk", &Config::chunk, "0",
              {0, kMaxCount, false, false, "must be >= 0 and at most 1000000000; 0 means m"},
              "this rank's most samples per forward/backward: each slot of up to m samples runs in pieces of at "
              "most this many, with the same result (sums and the global count). May differ per rank; halved on "
              "its own after an out-of-memory error. 0: m. Not with BatchNorm (--norm batch|syncbatch)",
              0),
      integer("batch", "epochs", &Config::epochs, "1", {1, 1e6, false, false, "must be an integer >= 1 and at most 1000000"},
              "passes over the training set", A),
      integer("batch", "max-steps", &Config::max_steps, "0",
              {0, kMaxSteps, false, false, "must be >= 0 and at most 1000000000000; 0 means no limit"},
              "stop after this many optimizer steps (0: no limit)", A),
      flag("batch", "drop-last", &Config::drop_last, "drop the short last step of each epoch (default: keep it)",
           A | S),
      boolean("batch", "shuffle", &Config::shuffle, "true",
              "draw a new sample order each epoch (--shuffle=false: file order)", A | S | R),

      choice("optim", "optimizer", &Config::optimizer, kOptimizers, "sgd", "sgd|adam|adamw", A | S | R),
      number("optim", "lr", &Config::lr, "0.01", {0, 1e6, false, false, "must be a finite number >= 0 and at most 1000000"},
             "learning rate (peak, with a schedule)", A | S),
      number("optim", "momentum", &Config::momentum, "0", {0, 1, false, true, "must be in [0, 1)"}, "SGD momentum",
             A | S),
      flag("optim", "nesterov", &Config::nesterov, "SGD Nesterov momentum (needs momentum > 0)", A | S),
      number("optim", "weight-decay", &Config::weight_decay, "0", {0, kMax, false, false, "must be a finite number >= 0"},
             "L2 penalty (sgd, adam) or decoupled decay (adamw)", A | S),
      number("optim", "beta1", &Config::beta1, "0.9", {0, 1, false, true, "must be in [0, 1)"}, "Adam/AdamW beta1",
             A | S),
      number("optim", "beta2", &Config::beta2, "0.999", {0, 1, false, true, "must be in [0, 1)"}, "Adam/AdamW beta2",
             A | S),
      number("optim", "eps", &Config::eps, "1e-08", {0, 1, true, true, "must be in (0, 1)"}, "Adam/AdamW epsilon",
             A | S),
      flag("optim", "amsgrad", &Config::amsgrad,
           "Adam/AdamW: the AMSGrad variant (keeps the maximum of the second moments: a third state tensor)",
           A | S),
      number("optim", "clip-grad-norm", &Config::clip_grad_norm, "0",
             {0, kMax, false, false, "must be a finite number >= 0; 0 turns clipping off"},
             "clip the global gradient L2 norm to this (0: off)", A | S),

      choice("schedule", "lr-schedule", &Config::lr_schedule, kSchedules, "constant",
             "constant|step|cosine (cosine: linear warm-up then cosine to min-lr)", A | S),
      integer("schedule", "warmup-steps", &Config::warmup_steps, "0",
              {0, kMaxSteps, false, false, "must be >= 0 and at most 1000000000000"},
              "linear warm-up steps (any schedule)", A | S),
      integer("schedule", "lr-step-size", &Config::lr_step_size, "1000",
              {1, kMaxSteps, false, false, "must be an integer >= 1 and at most 1000000000000"},
              "step schedule: decay every this many optimizer steps", A | S),
      number("schedule", "lr-gamma", &Config::lr_gamma, "0.1", {0, 1, true, false, "must be in (0, 1]"},
             "step schedule: decay factor", A | S),
      number("schedule", "min-lr", &Config::min_lr, "0", {0, kMax, false, false, "must be a finite number in [0, lr]"},
             "cosine schedule: final learning rate", A | S),

      choice("amp", "precision", &Config::precision, kPrecisions, "fp32",
             "forward pass under autocast: fp32 (off)|bf16|fp16; parameters and gradients stay float32", A | S),
      choice("amp", "grad-scaler", &Config::grad_scaler, kScalerModes, "auto", "loss scaling: auto (on for fp16)|on|off",
             A | S),
      number("amp", "scaler-init", &Config::scaler_init, "65536", {0, 1e30, true, false, "must be > 0 and at most 1e30"},
             "initial loss scale", A | S),
      integer("amp", "scaler-growth-interval", &Config::scaler_growth_interval, "2000",
              {1, 1e9, false, false, "must be an integer >= 1 and at most 1000000000"},
              "grow the scale after this many steps without inf/NaN", A | S),
      number("amp", "scaler-growth-factor", &Config::scaler_growth_factor, "2",
             {1, 1e6, true, false, "must be > 1 and at most 1000000"}, "factor the scale grows by", A | S),
      number("amp", "scaler-backoff-factor", &Config::scaler_backoff_factor, "0.5", {0, 1, true, true, "must be in (0, 1)"},
             "factor the scale shrinks by after inf/NaN", A | S),
      choice("amp", "nonfinite", &Config::nonfinite, kNonFinite, "error",
             "without a scaler, an inf/NaN gradient: error (stop, naming the parameter)|skip (skip the step)", A | S),

      choice("dist", "device", &Config::device, kDevices, "cpu", "cpu|cuda|auto (cuda: GPU = local rank)", A | S),
      choice("dist", "backend", &Config::backend, kBackends, "auto",
             "gradient transport: auto (self at 1 rank, nccl on cuda, mpi on cpu)|self|mpi|nccl", A | S),
      number("dist", "bucket-mb", &Config::bucket_mb, "25", {0.001, 1e5, false, false, "must be in [0.001, 100000]"},
             "gradient all-reduce bucket size in MB", A | S),
      number("dist", "timeout", &Config::timeout, "600", {0.1, 1e6, false, false, "seconds, must be in [0.1, 1000000]"},
             "seconds a rank waits in one collective; a rank that does not arrive in time ends the job (exit 4)", A | S),
      boolean("dist", "overlap", &Config::overlap, "true",
              "start each bucket's all-reduce during the window's last backward (--overlap=false: after it)", A | S),
      flag("dist", "shard-optimizer", &Config::shard_optimizer,
           "optimizer state sharded across ranks (ZeRO-1): the window's reduction becomes a reduce-scatter, each rank "
           "steps its 1/W of the parameters with its 1/W of the state, an all-gather brings the updated parameters; "
           "the same traffic and results, checkpoints in the one format. Not with --cuda-graphs",
           A),

      text("output", "metrics", &Config::metrics, "",
           "JSON-lines metrics file (one record per step, a final record); auto: "
           "out/<INI stem>-<hash of the training options>.metrics.jsonl, one file per distinct run",
           0),
      text("output", "tensorboard-dir", &Config::tensorboard_dir, "",
           "also write TensorBoard event files (loss, lr, samples/s, grad norm, scale, test metrics) here", 0),
      text("output", "save-weights", &Config::save_weights, "", "write the final weights to this safetensors file", 0),
      text("output", "save-init-weights", &Config::save_init_weights, "",
           "write the initial weights to this safetensors file", 0),
      text("output", "init-weights", &Config::init_weights, "", "start from the weights in this safetensors file", A | S),
      text("output", "checkpoint-dir", &Config::checkpoint_dir, "",
           "folder of checkpoints (step-N subfolders); written at the end and every --checkpoint-every steps", A),
      integer("output", "checkpoint-every", &Config::checkpoint_every, "0",
              {0, kMaxSteps, false, false, "must be >= 0 and at most 1000000000000"},
              "write a checkpoint every N optimizer steps (0: only at the end)", A),
      integer("output", "keep-last", &Config::keep_last, "3",
              {0, 1e6, false, false, "must be >= 0 and at most 1000000; 0 keeps all"},
              "keep the newest N checkpoints (0: keep all)", A),
      text("output", "resume", &Config::resume, "",
           "auto (newest checkpoint in --checkpoint-dir, fresh start if none) or the path of a step-N folder", A),
      integer("output", "log-every", &Config::log_every, "0",
              {0, kMaxSteps, false, false, "must be >= 0 and at most 1000000000000"},
              "print a log line every N optimizer steps (0: progress line and epoch lines only)", 0),
      integer("output", "gpu-busy-steps", &Config::gpu_busy_steps, "0", {0, 1e6, false, false, "must be in [0, 1000000]"},
              "measure the GPU-busy fraction (device activity over wall time, Kineto/CUPTI) over the run's last N "
              "windows (never its first; an epoch's end closes it); printed and in the final metrics record (gpu_busy)",
              A),
      boolean("output", "eval", &Config::eval, "true", "evaluate on the test set after every epoch (--eval=false: off)",
              A | S),
      flag("output", "quiet", &Config::quiet, "print no progress, log or epoch lines (metrics are still written)", 0),
  };
}

std::string real_text(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

}  // namespace

namespace options {

const std::vector<Row>& rows() {
  static const std::vector<Row> table = make_rows();
  return table;
}

const Row* find(const std::string& name) {
  for (const Row& r : rows())
    if (r.info.name == name) return &r;
  return nullptr;
}

}  // namespace options

const std::vector<OptionInfo>& option_table() {
  static const std::vector<OptionInfo> table = [] {
    std::vector<OptionInfo> out;
    for (const Row& r : options::rows()) out.push_back(r.info);
    return out;
  }();
  return table;
}

std::string option_text(const Config& c, const std::string& name) {
  const Row* r = options::find(name);
  VDP_ASSERT(r && !(r->info.traits & kAction), "no setting named '", name, "'");
  return std::visit(
      [&](const auto& f) -> std::string {
        using F = std::decay_t<decltype(f)>;
        if constexpr (std::is_same_v<F, options::ChoiceField>) return f.get(c);
        else if constexpr (std::is_same_v<F, bool Config::*>) return c.*f ? "true" : "false";
        else if constexpr (std::is_same_v<F, double Config::*>) return real_text(c.*f);
        else if constexpr (std::is_same_v<F, std::string Config::*>) return c.*f;
        else return std::to_string(c.*f);
      },
      r->field);
}

void set_option_text(Config& c, const std::string& name, const std::string& text) {
  const Row* r = options::find(name);
  VDP_ASSERT(r && !(r->info.traits & kAction), "no setting named '", name, "'");
  auto bad = [&] { VDP_FAIL("invalid value for --", name, ": '", text, "' (expected a ", r->info.type, ")"); };
  std::visit(
      [&](const auto& f) {
        using F = std::decay_t<decltype(f)>;
        size_t used = 0;
        try {
          if constexpr (std::is_same_v<F, options::ChoiceField>) {
            f.set(c, name, text);
            used = text.size();
          } else if constexpr (std::is_same_v<F, bool Config::*>) {
            if (text != "true" && text != "false") bad();
            c.*f = text == "true";
            used = text.size();
          } else if constexpr (std::is_same_v<F, double Config::*>) {
            c.*f = std::stod(text, &used);
          } else if constexpr (std::is_same_v<F, std::string Config::*>) {
            c.*f = text;
            used = text.size();
          } else if constexpr (std::is_same_v<F, uint64_t Config::*>) {
            c.*f = std::stoull(text, &used);
          } else {
            c.*f = std::stoll(text, &used);
          }
        } catch (const std::logic_error&) {  // std::invalid_argument, std::out_of_range
          bad();
        }
        if (used != text.size()) bad();
      },
      r->field);
}

std::vector<std::pair<std::string, std::string>> options_with(const Config& c, unsigned traits) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Row& r : options::rows())
    if (!(r.info.traits & kAction) && (r.info.traits & traits) == traits) out.emplace_back(r.info.name, option_text(c, r.info.name));
  return out;
}

std::string config_to_ini(const Config& c) {
  std::string out, section;
  for (const Row& r : options::rows()) {
    if (r.info.traits & kAction) continue;
    if (r.info.section != section) {
      out += (section.empty() ? "[" : "\n[") + r.info.section + "]\n";
      section = r.info.section;
    }
    out += r.info.name + " = " + option_text(c, r.info.name) + "\n";
  }
  return out;
}

std::string options_reference() {
  std::ostringstream os;
  os << "# vdp-train options\n\n"
        "Every option of `vdp-train` (and of programs built on `vdp::run`), generated from the option table\n"
        "in `src/config/options.cpp`; `tests/config/options_test.cpp` fails when this file differs from the\n"
        "table (`VDP_UPDATE_REFERENCE=1 build/tests/vdp_unit_tests --gtest_filter=Options.*` rewrites it).\n"
        "Each option works on the command line (`--name value` or `--name=value`) and in an INI file\n"
        "(`name = value`, at the top or under its `[section]`); the command line wins.\n\n"
        "Traits: **agree**: every rank must be started with the same value (else exit 2, \"ranks\n"
        "disagree\"); options without it may differ per rank (outputs, printing, the data folder, whose\n"
        "contents are compared instead). **shapes**: part of the training's identity, hashed into the\n"
        "`--metrics auto` file name (speed-only options are not). **resume**: a checkpoint resumes only\n"
        "with the same value. **action**: does something instead of setting something; not written to INI.\n";
  std::string section;
  for (const OptionInfo& o : option_table()) {
    if (o.section != section) {
      section = o.section;
      os << "\n## [" << section << "]\n\n| option | type | default | allowed | traits | what it does |\n"
         << "|---|---|---|---|---|---|\n";
    }
    std::string traits;
    for (const auto& [bit, word] : std::vector<std::pair<unsigned, const char*>>{
             {kAction, "action"}, {kAgree, "agree"}, {kShapes, "shapes"}, {kResume, "resume"}})
      if (o.traits & bit) traits += (traits.empty() ? "" : ", ") + std::string(word);
    std::string allowed = o.range;
    for (const auto& ch : o.choices) allowed += (allowed.empty() ? "" : " \\| ") + ch;
    std::string help;
    for (char ch : o.help) help += ch == '|' ? std::string(" \\| ") : std::string(1, ch);
    os << "| `--" << o.name << "` | " << o.type << " | " << (o.default_text.empty() ? "" : "`" + o.default_text + "`")
       << " | " << allowed << " | " << traits << " | " << help << " |\n";
  }
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
