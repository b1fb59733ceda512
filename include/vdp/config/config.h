// Every option vdp-train understands, declared once as a row of the option table
// (src/config/options.cpp): section, type, default, help, range and traits. Everything that lists
// options is derived from those rows: the command-line and INI parser, --help, the range checks,
// config_to_ini, rank agreement, the resume check, the --metrics auto hash and the options
// reference (configs/README.md). Options are validated once into the typed Config below before any
// MPI, CUDA or data work starts; nothing past the parser looks options up by name.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace vdp {

enum class DatasetKind { FashionMnist, Regression, BceToy, Sequence, Npy, Tokens };
// The four files --dataset fashion-mnist reads from --data-dir (checked at start, digested for rank
// agreement).
inline constexpr const char* kFashionMnistFiles[] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                                     "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
enum class LossKind { Auto, CrossEntropy, Bce, Mse, TokenCrossEntropy };
enum class ModelKind { Mlp, SeedConvnet, FmnistCnn, SeqGru, Resnet18, Torchscript, Gpt, Gpt2Small };
enum class NormKind { None, Batch, SyncBatch, Group };
enum class MomentumUnit { MicroStep, Window };
enum class OptimizerKind { Sgd, Adam, AdamW };
enum class ScheduleKind { Constant, Step, Cosine };
enum class DType { Float32, Float64 };
enum class DeviceKind { Auto, Cpu, Cuda };
enum class BackendKind { Auto, Self, Mpi, Nccl };
enum class Precision { Fp32, Bf16, Fp16 };
enum class ScalerMode { Auto, On, Off };
enum class NonFinite { Error, Skip };

struct Config {
  // [run]
  std::string config_file;   // INI file the values below were read from ("" if none)
  uint64_t seed = 0;         // model init, data order, synthetic data
  bool dry_run = false;      // print the plan and exit
  bool print_config = false; // print the resolved configuration (INI) and exit
  bool deterministic = false; // deterministic ATen/cuDNN/cuBLAS algorithms (device/determinism.h)
  bool cuda_graphs = false;   // replay captured micro-steps and window tails (device/cuda_graph.h)

  // [data]
  DatasetKind dataset = DatasetKind::FashionMnist;
  std::string data_dir;         // Fashion-MNIST IDX .gz folder, or the .npy files' folder
  int64_t samples = 0;          // synthetic training samples
  int64_t test_samples = 0;     // synthetic held-out samples (0: none)

  // [model]
  ModelKind model = ModelKind::FmnistCnn;
  NormKind norm = NormKind::None;
  LossKind loss = LossKind::Auto;
  bool channels_last = false;   // resnet18: NHWC convolutions
  std::string model_file;       // torchscript: the module saved from Python
  int64_t context = 64;         // gpt: most tokens per sample (also how the token dataset cuts documents)
  int64_t layers = 2;           // gpt: blocks
  int64_t heads = 4;            // gpt: attention heads (hidden is the width)
  int64_t prefetch = 2;         // micro-batches a background thread gathers ahead (0: in the loop)
  bool data_on_device = false;  // GPU: the training set resident on the device (data/resident.h)
  int64_t eot_token = -1;       // tokens: end-of-text id (-1: 50256 for GPT-2 tokens, else 256)  // auto: the dataset's own (npy: from the targets' dtype)
  DType dtype = DType::Float32;
  int64_t hidden = 0;           // width of mlp / seq-gru hidden layers
  bool recompute = false;       // run the model's blocks again in backward instead of keeping their activations
  MomentumUnit bn_momentum_unit = MomentumUnit::MicroStep;  // running-statistics momentum per forward or per step

  // [batch]  (in samples)
  int64_t global_batch = 0;     // B: samples per optimizer step, over all ranks and micro-steps
  int64_t micro_batch = 0;      // m: the plan's micro-batch (places samples, fixes K); 0: auto (searched)
  std::string memory_budget;    // --micro-batch auto: this rank's bytes, or a fraction of the host's memory
  bool search_again = false;    // --micro-batch auto on resume: search instead of taking the checkpoint's m
  int64_t chunk = 0;            // this rank's most samples per forward/backward (0: m); per rank
  int64_t epochs = 0;
  int64_t max_steps = 0;        // 0: no limit; else stop after this many optimizer steps
  bool drop_last = false;       // drop the short last step of each epoch
  bool shuffle = true;          // false: every epoch takes the samples in file order
  bool print_ids = false;       // with dry_run: print the sample ids of every slot of the first epoch

  // [optim]
  OptimizerKind optimizer = OptimizerKind::Sgd;
  double lr = 0;
  double momentum = 0;
  bool nesterov = false;
  double weight_decay = 0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  bool amsgrad = false;         // Adam/AdamW: AMSGrad (a third state tensor)
  double clip_grad_norm = 0;    // 0: no clipping

  // [schedule]  (stepped once per optimizer step)
  ScheduleKind lr_schedule = ScheduleKind::Constant;
  int64_t warmup_steps = 0;
  int64_t lr_step_size = 0;     // step schedule: multiply by lr_gamma every lr_step_size steps
  double lr_gamma = 0.1;
  double min_lr = 0;            // cosine floor

  // [amp]
  Precision precision = Precision::Fp32;  // autocast dtype of the forward pass
  ScalerMode grad_scaler = ScalerMode::Auto;  // auto: on for fp16
  double scaler_init = 65536.0;
  int64_t scaler_growth_interval = 2000;
  double scaler_growth_factor = 2.0;
  double scaler_backoff_factor = 0.5;
  NonFinite nonfinite = NonFinite::Error;  // without a scaler: stop, or skip the step

  // [dist]
  DeviceKind device = DeviceKind::Cpu;
  BackendKind backend = BackendKind::Auto;
  double bucket_mb = 25;        // all-reduce bucket size, MB (1e6 bytes)
  bool overlap = true;          // start buckets during the last micro-step's backward
  bool shard_optimizer = false;  // ZeRO-1: reduce-scatter, step this rank's shard, all-gather (optim/shard.h)
  double timeout = 600;         // seconds any rank waits in one collective before the job ends (exit 4)

  // [output]
  std::string metrics;          // JSON-lines metrics file ("" : none)
  std::string tensorboard_dir;  // TensorBoard event files ("" : none)
  std::string save_weights;     // final weights, safetensors ("" : none)
  std::string save_init_weights;// initial weights (after broadcast), safetensors
  std::string init_weights;     // start from these weights (safetensors)
  std::string checkpoint_dir;   // where checkpoints go ("" : none)
  int64_t checkpoint_every = 0; // a checkpoint every N optimizer steps (0: only at the end)
  int64_t keep_last = 3;        // checkpoints kept (0: all)
  std::string resume;           // "" (fresh start), "auto" (newest in checkpoint_dir, if any) or a path
  int64_t log_every = 0;        // a plain log line every N steps (0: progress line only)
  int64_t gpu_busy_steps = 0;  // the run's last N windows: the GPU-busy fraction measured over them
  bool eval = true;             // evaluate on the test set after each epoch
  bool quiet = false;           // no progress, epoch or log lines on the terminal
};

// --memory-budget: a fraction in (0, 1] of the memory the device has (on the CPU: of the host's
// available memory, shared equally by the ranks on the host), or bytes (a number with an optional
// K, M, G or T suffix: powers of 1024). Throws UserError naming the text.
struct MemoryBudget {
  double fraction = 0;  // > 0: a fraction
  int64_t bytes = 0;    // > 0: bytes
};
MemoryBudget parse_memory_budget(const std::string& text);

// Outcome of parsing: either a config to run with, or text to print and exit 0 (--help).
struct ParseResult {
  Config config;
  bool exit_now = false;       // --help was given: print `text` and exit 0
  std::string text;
};

// How a program parses: vdp-train's settings are the defaults.
struct ParseSettings {
  std::string program = "vdp-train";  // the name in --help and in messages
  // The program's own defaults, as (option name without --, value): under the command line and the
  // INI file, over the built-in defaults. E.g. {{"global-batch", "64"}, {"optimizer", "adam"}}.
  std::vector<std::pair<std::string, std::string>> defaults;
  // The program brings its own data and model (vdp::run with RunSpec::make_task): --dataset,
  // --model, --norm and --data-dir are not checked against the built-in tasks.
  bool own_task = false;
};

// Parses argv (argv[0] is the program name) and the INI file named by --config (or given as the one
// positional argument), then validates. Exact option names only. Throws vdp::UserError with one
// line naming the option, the value and what is allowed.
ParseResult parse_config(int argc, const char* const* argv, const ParseSettings& settings = {});

// The resolved configuration as an INI file that --config accepts: every setting (not the actions).
std::string config_to_ini(const Config& cfg);

// What an option's row says of it besides its value.
enum OptionTrait : unsigned {
  kAction = 1u << 0,  // does something rather than set something (--help, --config, --dry-run, ...): not in INI
  kAgree = 1u << 1,   // every rank must be started with the same value (train/rank_agreement.h)
  kShapes = 1u << 2,  // shapes the training: part of the --metrics auto hash (speed-only options are not)
  kResume = 1u << 3,  // a checkpoint resumes only with the same value
};

// One row of the option table, as the rest of vdp sees it.
struct OptionInfo {
  std::string section;       // INI section and --help group
  std::string name;          // without the leading --
  std::string type;          // flag, bool, integer, number, text or choice
  std::string default_text;  // as written in an INI file
  std::string range;         // what values are allowed, in words ("" : any)
  std::string help;
  std::vector<std::string> choices;  // choice options: the allowed values
  unsigned traits = 0;               // OptionTrait bits
};

// The option table, in its order (sections in --help order).
const std::vector<OptionInfo>& option_table();
// The value of setting `name` in `cfg` as INI text; set_option_text parses INI text into `cfg`
// without validation (UserError for text of the wrong type). Unknown names throw InternalError.
std::string option_text(const Config& cfg, const std::string& name);
void set_option_text(Config& cfg, const std::string& name, const std::string& text);
// (name, INI text) of every setting whose row has all bits of `traits`, in table order.
std::vector<std::pair<std::string, std::string>> options_with(const Config& cfg, unsigned traits);
// --metrics auto's file: out/<INI stem>-<8 hex digits of a hash of the kShapes options>.metrics.jsonl.
std::string auto_metrics_path(const Config& cfg);
// The options reference as Markdown (configs/README.md is this text).
std::string options_reference();

// Names used in messages, --print-config and metrics.
const char* to_string(DatasetKind v);
const char* to_string(ModelKind v);
const char* to_string(NormKind v);
const char* to_string(LossKind v);
const char* to_string(MomentumUnit v);
const char* to_string(OptimizerKind v);
const char* to_string(ScheduleKind v);
const char* to_string(DType v);
const char* to_string(DeviceKind v);
const char* to_string(BackendKind v);
const char* to_string(Precision v);
const char* to_string(ScalerMode v);
const char* to_string(NonFinite v);

}  // namespace vdp
