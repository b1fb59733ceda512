// The GPU test program (CTest label gpu). Every test skips when no CUDA device is visible, so CI on
// CPU machines stays green; on a GPU host it runs from a packed build (launch/gpu-kit.sh):
//   . .gpu-kit/env.sh && vdp_gpu_tests
// The NCCL communicator runs at world size 1 (NCCL refuses two ranks on one GPU); multi-rank
// behaviour is covered on the CPU by the MPI tests through the same Communicator interface.
//
// Built with VDP_GPU_TESTS_ON_CPU (vdp_gpu_tests_cpu, CTest gpu.tests_on_cpu, run in CI), the same
// tests run on the CPU with the same options, the parts that need CUDA itself (graphs) left out: so the
// option lists and every assertion that does not depend on the device stay checked where no GPU
// is lent (the GPU program itself has run on a GPU only rarely).
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#ifndef VDP_GPU_TESTS_ON_CPU
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/csrc/autograd/variable.h>

#include "vdp/device/compute_stream.h"
#include "vdp/device/cuda_graph.h"
#endif
#include <torch/cuda.h>
#include <torch/nn/modules/batchnorm.h>

#include <filesystem>
#include <limits>

#include "../train/chunk_test_util.h"
#include "../train/train_test_util.h"
#include "vdp/amp/autocast.h"
#include "vdp/core/error.h"
#include "vdp/device/determinism.h"
#include "vdp/device/memory.h"
#include "vdp/nn/gpt.h"
#include "vdp/amp/grad_scaler.h"
#include "vdp/nn/sync_batchnorm.h"
#include "vdp/optim/optim.h"
#if defined(VDP_WITH_NCCL) && !defined(VDP_GPU_TESTS_ON_CPU)
#include "vdp/dist/nccl_communicator.h"
#endif

namespace vdp {
namespace {

using testing::rel_diff;
using testing::with;

#ifdef VDP_GPU_TESTS_ON_CPU
#define VDP_REQUIRE_GPU() (void)0
constexpr bool kCuda = false;  // parts that need CUDA itself (graphs) are left out
constexpr auto kDeviceType = torch::kCPU;
const char* const kDevice = "cpu";
#else
#define VDP_REQUIRE_GPU() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device visible"
constexpr bool kCuda = true;
constexpr auto kDeviceType = torch::kCUDA;
const char* const kDevice = "cuda";
#endif

#if defined(VDP_WITH_NCCL) && !defined(VDP_GPU_TESTS_ON_CPU)
// The one NCCL communicator of the program, destroyed after the last test and before exit (a static
// destroyed at exit would call into NCCL and CUDA after their own teardown began).
std::shared_ptr<Communicator>& nccl_comm() {
  static std::shared_ptr<Communicator> c;
  return c;
}
struct NcclTeardown : ::testing::Environment {
  void TearDown() override { nccl_comm().reset(); }
};
[[maybe_unused]] ::testing::Environment* const kNcclTeardown = ::testing::AddGlobalTestEnvironment(new NcclTeardown);
#endif

std::shared_ptr<Communicator> gpu_comm() {
#if defined(VDP_GPU_TESTS_ON_CPU)
  return std::make_shared<SelfCommunicator>();
#elif defined(VDP_WITH_NCCL)
  if (!nccl_comm()) nccl_comm() = std::make_shared<NcclCommunicator>(MPI_COMM_NULL, 0, 1, 0);
  return nccl_comm();
#else
  return std::make_shared<SelfCommunicator>(torch::Device(torch::kCUDA, 0));
#endif
}

// CUDA's sync debug mode: any synchronizing call of ATen throws while it is on. Nothing on the CPU.
void sync_debug(bool on) {
#ifndef VDP_GPU_TESTS_ON_CPU
  c10::cuda::warning_state().set_sync_debug_mode(on ? c10::cuda::SyncDebugMode::L_ERROR
                                                     : c10::cuda::SyncDebugMode::L_DISABLED);
#else
  (void)on;
#endif
}

TEST(GpuNccl, AllReduceAndBroadcastClosedFormAtW1) {
  VDP_REQUIRE_GPU();
  auto comm = gpu_comm();
  for (auto dtype : {torch::kFloat32, torch::kFloat64, torch::kBFloat16, torch::kFloat16})
    for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{1} << 20, int64_t{1} << 24}) {
      // Small integers (exact in every dtype): the sum over one rank is the input itself.
      const auto opts = torch::TensorOptions().device(kDeviceType).dtype(dtype);
      const torch::Tensor expected = (torch::arange(n, torch::TensorOptions().device(kDeviceType)) % 7 + 1).to(dtype);
      torch::Tensor t = expected.clone();
      comm->all_reduce_sum(t);
      ASSERT_TRUE(torch::equal(t, expected)) << dtype << " n=" << n;
      comm->broadcast(t, 0);
      ASSERT_TRUE(torch::equal(t, expected)) << dtype << " n=" << n;
      (void)opts;
    }
}

TEST(GpuNccl, WorkIsOrderedAgainstTheComputeStreamWithoutHostSync) {
  VDP_REQUIRE_GPU();
  auto comm = gpu_comm();
  const int64_t n = int64_t{1} << 24;
  for (int rep = 0; rep < 5; ++rep) {
    torch::Tensor t = torch::zeros({n}, torch::TensorOptions().device(kDeviceType));
    // Kernels before the call write the buffer (several, so they are still running when the
    // collective is enqueued); a kernel after it reads the result. No host synchronization between.
    for (int i = 0; i < 20; ++i) t.add_(1);
    auto work = comm->all_reduce_sum_async(t);
    work->wait();
    t.mul_(3);
    EXPECT_EQ(t.min().item<float>(), 60.f);
    EXPECT_EQ(t.max().item<float>(), 60.f);
  }
}

const std::vector<std::string> kRegression = {"--dataset", "regression", "--model", "mlp", "--samples", "101",
                                              "--global-batch", "10", "--epochs", "2", "--hidden", "16",
                                              "--seed", "5", "--device", kDevice};
const std::vector<std::vector<std::string>> kOptimizers = {
    {"--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9", "--nesterov", "--weight-decay", "1e-3",
     "--clip-grad-norm", "0.5", "--lr-schedule", "cosine", "--warmup-steps", "3"},
    {"--optimizer", "adam", "--lr", "0.01", "--clip-grad-norm", "1.0"},
    {"--optimizer", "adamw", "--lr", "0.01", "--weight-decay", "0.05"},
};

TEST(GpuEquivalence, FactorizationsEqualTheFullBatchOnCuda) {
  VDP_REQUIRE_GPU();
  // m = B against uneven micro-batches (m = 3: slots of 3, 3, 3, 1) and a short last step.
  for (const auto& o : kOptimizers)
    for (const auto& [dtype, tol] : {std::pair<const char*, double>{"float64", 1e-10}, {"float32", 1e-5}}) {
      const auto base = with(with(kRegression, o), {"--dtype", dtype});
      const auto ref = testing::run_vdp(with(base, {"--micro-batch", "10"}), gpu_comm());
      const auto got = testing::run_vdp(with(base, {"--micro-batch", "3"}), gpu_comm());
      EXPECT_LE(rel_diff(got.params, ref.params), tol) << o[1] << " " << dtype;
    }
}

TEST(GpuReducer, OverlapOnAndOffGiveTheSameParameters) {
  VDP_REQUIRE_GPU();
  // Small buckets: several start during the last backward with overlap on.
  const auto base = with(with(kRegression, kOptimizers[0]), {"--dtype", "float64", "--micro-batch", "3",
                                                             "--bucket-mb", "0.001"});
  const auto on = testing::run_vdp(with(base, {"--overlap=true"}), gpu_comm());
  const auto off = testing::run_vdp(with(base, {"--overlap=false"}), gpu_comm());
  EXPECT_TRUE(torch::equal(on.params, off.params)) << rel_diff(on.params, off.params);
}

TEST(GpuAmp, Fp16OverflowSkipsTheStepAndBacksOff) {
  VDP_REQUIRE_GPU();
  Config cfg = testing::config_from({"--dataset", "regression", "--model", "mlp", "--samples", "400",
                                     "--global-batch", "8", "--micro-batch", "4", "--optimizer", "adam", "--lr",
                                     "0.01", "--precision", "fp16", "--scaler-init", "1024",
                                     "--scaler-growth-interval", "3", "--max-steps", "8", "--device", kDevice});
  cfg.quiet = true, cfg.eval = false;
  Trainer t(cfg, make_task(cfg), gpu_comm());
  t.on_loss([&](const StepRecord& win, int64_t k, const Batch&, LossSum& loss) {
    if (win.step == 2 && k == 1) loss.sum = loss.sum * std::numeric_limits<double>::infinity();
  });
  torch::Tensor before;
  NamedTensors opt_before;
  std::vector<StepRecord> steps;
  t.on_step([&](const StepRecord& r) {
    steps.push_back(r);
    if (r.step == 1) before = testing::flat_params(t.model()), opt_before = optimizer_state(t.optimizer(), t.parameters());
    if (r.step == 2) {
      EXPECT_TRUE(torch::equal(testing::flat_params(t.model()), before));
      const NamedTensors opt_after = optimizer_state(t.optimizer(), t.parameters());
      for (size_t i = 0; i < opt_after.size(); ++i) EXPECT_TRUE(torch::equal(opt_after[i].second, opt_before[i].second));
    }
  });
  t.fit();
  ASSERT_EQ(steps.size(), 8u);
  const std::vector<double> expected = {1024, 1024, 1024, 512, 512, 512, 1024, 1024};
  for (size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(steps[i].skipped, i == 2) << "step " << i;
    EXPECT_EQ(steps[i].scale, expected[i]) << "step " << i;
  }
}

TEST(GpuAmp, Bf16WithoutScalerTrains) {
  VDP_REQUIRE_GPU();
  const auto out = testing::run_vdp({"--dataset", "regression", "--model", "mlp", "--samples", "400",
                                     "--global-batch", "32", "--micro-batch", "8", "--epochs", "3", "--lr", "0.05",
                                     "--precision", "bf16", "--device", kDevice},
                                    gpu_comm());
  EXPECT_TRUE(std::isfinite(out.result.last_loss));
  const auto fp32 = testing::run_vdp({"--dataset", "regression", "--model", "mlp", "--samples", "400",
                                      "--global-batch", "32", "--micro-batch", "8", "--epochs", "3", "--lr", "0.05",
                                      "--device", kDevice},
                                     gpu_comm());
  EXPECT_LE(std::abs(out.result.last_loss - fp32.result.last_loss), 0.05 * std::abs(fp32.result.last_loss) + 1e-3);
}

TEST(GpuSyncBatchNorm, NcclAtW1EqualsBatchNormForwardAndBackward) {
  VDP_REQUIRE_GPU();
  const auto dev = torch::Device(kDeviceType, 0);
  for (bool autocast : {false, true}) {
    torch::manual_seed(3);
    auto opts = torch::nn::BatchNormOptions(4);
    SyncBatchNorm sync(opts, 2);
    torch::nn::BatchNorm2d bn(opts);
    sync->to(dev), bn->to(dev);
    sync->set_communicator(gpu_comm());
    const torch::Tensor x0 = torch::randn({6, 4, 9, 9}, torch::TensorOptions().device(dev));
    const torch::Tensor dy = torch::randn({6, 4, 9, 9}, torch::TensorOptions().device(dev));
    torch::Tensor xs = x0.clone().requires_grad_(true), xb = x0.clone().requires_grad_(true);
    torch::Tensor ys, yb;
    {
      // Under autocast the layer sees float16 activations (as after a convolution).
      const torch::Tensor in_s = autocast ? xs.to(torch::kHalf) : xs;
      const torch::Tensor in_b = autocast ? xb.to(torch::kHalf).to(torch::kFloat) : xb;
      ys = sync->forward(in_s).to(torch::kFloat);
      yb = bn->forward(in_b);
    }
    (ys * dy).sum().backward();
    (yb * dy).sum().backward();
    const double tol = autocast ? 2e-3 : 1e-5;
    EXPECT_LE(rel_diff(ys.detach().to(torch::kFloat64), yb.detach().to(torch::kFloat64)), tol) << autocast;
    EXPECT_LE(rel_diff(xs.grad().to(torch::kFloat64), xb.grad().to(torch::kFloat64)), tol) << autocast;
    EXPECT_LE(rel_diff(sync->weight.grad().to(torch::kFloat64), bn->weight.grad().to(torch::kFloat64)), tol);
    EXPECT_LE(rel_diff(sync->running_var.to(torch::kFloat64), bn->running_var.to(torch::kFloat64)), tol);
  }
}

// The runs of the sync-free window tests: the MLP in fp16 with the scaler (initial scale given),
// clipping and a cosine schedule, 13 windows per epoch (4 micro-steps, the last window 2); momentum
// for SGD.
Config fp16_window_config(const char* optimizer, int epochs, const char* scaler_init) {
  std::vector<std::string> args = {"--dataset", "regression", "--model", "mlp", "--samples", "400",
                                   "--global-batch", "32", "--micro-batch", "8", "--epochs", std::to_string(epochs),
                                   "--optimizer", optimizer, "--lr", "0.01", "--precision", "fp16",
                                   "--scaler-init", scaler_init, "--clip-grad-norm", "1", "--lr-schedule", "cosine",
                                   "--device", kDevice};
  if (std::string(optimizer) == "sgd") args.insert(args.end(), {"--momentum", "0.9"});  // SGD's only
  Config cfg = testing::config_from(args);
  cfg.quiet = true, cfg.eval = false;
  return cfg;
}

// No host synchronization inside a window (Note [window read one late] in src/train/window.cpp):
// with CUDA's sync debug mode set to error, any synchronizing call of ATen (item(), a blocking
// copy to the host, a stream synchronize) throws. It is switched on at the first micro-step of
// window 1 and off when the last step is reported, so everything between (micro-steps, the
// producer's copies, the reduction, the tail with the scaler, clipping and the optimizer, and the
// host reading each window's figures behind its event) must run without one. Covers fp16 with the
// scaler and an overflow (a skip decided on the device), clipping and a cosine schedule, Adam and
// momentum SGD.
TEST(GpuWindow, NoHostSynchronizationInsideWindows) {
  VDP_REQUIRE_GPU();
  for (const char* opt : {"adam", "sgd"}) {
    SCOPED_TRACE(opt);
    Config cfg = fp16_window_config(opt, 1, "1024");
    Trainer t(cfg, make_task(cfg), gpu_comm());
    t.on_slot([&](int64_t, int64_t s, int64_t k, const std::vector<int64_t>&) {
      if (s == 1 && k == 0) sync_debug(true);
    });
    t.on_loss([&](const StepRecord& win, int64_t k, const Batch&, LossSum& loss) {
      if (win.step == 4 && k == 2) loss.sum = loss.sum * std::numeric_limits<double>::infinity();
    });
    std::vector<StepRecord> steps;
    t.on_step([&](const StepRecord& r) {
      steps.push_back(r);
      if (r.step + 1 == t.total_steps()) sync_debug(false);
    });
    try {
      t.fit();
    } catch (const std::exception& e) {
      sync_debug(false);
      FAIL() << "a host synchronization inside a window: " << e.what();
    }
    ASSERT_EQ(static_cast<int64_t>(steps.size()), t.total_steps());
    for (const auto& r : steps) EXPECT_EQ(r.skipped, r.step == 4) << "step " << r.step;
    EXPECT_EQ(steps[5].scale, 512) << "the scale backs off after the overflow";
    EXPECT_EQ(steps[5].lr, steps[4].lr) << "the schedule holds on a skipped step";
  }
}

// With --cuda-graphs the replayed windows need no host synchronization either (the captures
// themselves included: sync debug mode is on from window 1, and the tail is captured in window 2):
// fp16 with a scale far too large at first, so the first windows overflow and are skipped on the
// device inside the replayed tail while the scale backs off; the same steps are skipped as in the
// eager run, and both micro-steps and tails were replayed. Adam and momentum SGD.
TEST(GpuGraphs, NoHostSynchronizationInReplayedWindows) {
  VDP_REQUIRE_GPU();
  for (const char* opt : {"adam", "sgd"}) {
    SCOPED_TRACE(opt);
    std::vector<std::vector<int64_t>> skipped(2);
    for (int graphs = 0; graphs < (kCuda ? 2 : 1); ++graphs) {
      Config cfg = fp16_window_config(opt, 3, "1e9");
      cfg.cuda_graphs = graphs == 1;
      Trainer t(cfg, make_task(cfg), gpu_comm());
        t.on_slot([&](int64_t, int64_t s, int64_t k, const std::vector<int64_t>&) {
        if (s == 1 && k == 0) sync_debug(true);
      });
      int64_t steps = 0;
      t.on_step([&](const StepRecord& r) {
        ++steps;
        if (r.skipped) skipped[graphs].push_back(r.step);
        if (r.step + 1 == t.total_steps()) sync_debug(false);
      });
      TrainResult res;
      try {
        res = t.fit();
      } catch (const std::exception& e) {
        sync_debug(false);
        FAIL() << "a host synchronization inside a window (graphs " << graphs << "): " << e.what();
      }
      EXPECT_EQ(steps, t.total_steps());
      if (graphs) {
        EXPECT_GT(res.graph_replays, 0);
        EXPECT_GT(res.tail_replays, 0);
      }
    }
    if (!kCuda) continue;  // the CPU's autocast keeps float32 gradients: no overflow there
    EXPECT_FALSE(skipped[0].empty()) << "no overflow at a scale of 1e9";
    EXPECT_LT(skipped[0].size(), 30u) << "the scale never backed off enough";
    EXPECT_EQ(skipped[1], skipped[0]) << "replayed tails skip other steps than eager ones";
  }
}

// The producer on CUDA (pinned memory, copy stream, event) and the training set resident on the GPU
// (--data-on-device) give the very parameters of gathering in the loop.
TEST(GpuData, ProducerAndResidentSetEqualGatheringInTheLoop) {
  VDP_REQUIRE_GPU();
  const std::vector<std::string> base = {"--dataset", "regression", "--model", "mlp", "--samples", "403",
                                         "--global-batch", "32", "--micro-batch", "6", "--epochs", "2",
                                         "--optimizer", "adamw", "--lr", "0.01", "--device", kDevice,
                                         "--deterministic"};
  const auto ref = testing::run_vdp(with(base, {"--prefetch", "0"}), gpu_comm());
  for (const auto& extra : std::vector<std::vector<std::string>>{
           {"--prefetch", "2"}, {"--prefetch", "0", "--data-on-device"}, {"--prefetch", "3", "--data-on-device"}}) {
    const auto got = testing::run_vdp(with(base, extra), gpu_comm());
    EXPECT_TRUE(torch::equal(got.params, ref.params)) << extra[1] << " " << extra.size() << ": "
                                                      << rel_diff(got.params, ref.params);
  }
}

// --cuda-graphs replays the captured micro-step for the steady shape and the captured window tail,
// and runs the rest eagerly, with the eager run's parameters: float64 with --deterministic to 1e-10
// relative (N = 403, B = 32, m = 6: uneven slots and a short last step run eagerly; clipping; the
// optimizer step runs after the tail's replay, with the host's rate), fp16 with the scaler in
// float32 to 1e-5 (SGD inside the tail, the rate read from the device: float32, where the eager
// kernel multiplies by the double), and float32 Adam under a warm-up and cosine schedule (a new
// rate every step, read by every replay) to 1e-6.
TEST(GpuGraphs, ReplaysEqualEagerMicroStepsAndTails) {
  VDP_REQUIRE_GPU();
  const std::vector<std::string> f64 = {"--dataset", "regression", "--model", "mlp", "--samples", "403",
                                        "--global-batch", "32", "--micro-batch", "6", "--epochs", "2",
                                        "--optimizer", "adamw", "--lr", "0.01", "--clip-grad-norm", "1",
                                        "--dtype", "float64", "--device", kDevice, "--deterministic"};
  const std::vector<std::string> fp16 = {"--dataset", "bce-toy", "--model", "seed-convnet", "--samples", "256",
                                         "--global-batch", "32", "--micro-batch", "8", "--epochs", "2",
                                         "--momentum", "0.9", "--lr", "0.05", "--precision", "fp16",
                                         "--device", kDevice, "--deterministic"};
  const std::vector<std::string> cosine = {"--dataset", "regression", "--model", "mlp", "--samples", "512",
                                           "--global-batch", "32", "--micro-batch", "8", "--epochs", "2",
                                           "--optimizer", "adam", "--lr", "0.01", "--lr-schedule", "cosine",
                                           "--warmup-steps", "4", "--device", kDevice, "--deterministic"};
  for (const auto& [base, tol] : {std::pair{f64, 1e-10}, std::pair{fp16, 1e-5}, std::pair{cosine, 1e-6}}) {
    const auto eager = testing::run_vdp(base, gpu_comm());
    if (!kCuda) continue;
    const auto graphed = testing::run_vdp(with(base, {"--cuda-graphs"}), gpu_comm());
    EXPECT_GT(graphed.result.graph_replays, 0) << base[1] << ": no micro-step was replayed";
    EXPECT_GT(graphed.result.tail_replays, 0) << base[1] << ": no window tail was replayed";
    EXPECT_LE(rel_diff(graphed.params, eager.params), tol) << base[1];
  }
}

#ifndef VDP_GPU_TESTS_ON_CPU
// Finding: AccumulateGrad nodes kept alive (as the overlapped reducer keeps them) remember the stream
// current when they were made; made on the legacy default stream, backward inside a capture would
// make that stream wait on the capture, and the capture fails. Made and captured on the compute
// stream (Note [one compute stream]), the micro-step captures, and its replays accumulate the very
// gradients of eager micro-steps.
TEST(GpuGraphs, AMicroStepCapturesWithItsAccumulatorsKeptAlive) {
  VDP_REQUIRE_GPU();
  const torch::Device dev(torch::kCUDA, 0);
  const ComputeStreamScope compute(dev);
  torch::manual_seed(5);
  torch::nn::Sequential model(torch::nn::Linear(16, 32), torch::nn::ReLU(), torch::nn::Linear(32, 4));
  model->to(dev);
  std::vector<std::shared_ptr<torch::autograd::Node>> kept;
  for (auto& p : model->parameters()) {
    p.mutable_grad() = torch::zeros_like(p);
    kept.push_back(torch::autograd::impl::grad_accumulator(p));
    ASSERT_NE(kept.back(), nullptr);
  }
  std::vector<Batch> batches;
  for (int i = 0; i < 10; ++i) batches.push_back(Batch{torch::randn({8, 16}, dev), torch::randn({8, 4}, dev), {}});
  auto step = [&](const Batch& b) { torch::mse_loss(model->forward(b.x), b.y, at::Reduction::Sum).backward(); };
  auto grads = [&] {
    std::vector<torch::Tensor> g;
    for (auto& p : model->parameters()) g.push_back(p.grad().clone());
    return g;
  };
  for (const auto& b : batches) step(b);
  const auto eager = grads();
  for (auto& p : model->parameters()) p.mutable_grad().zero_();
  MicroStepGraph graph(dev, 8, /*warmup=*/3);
  try {
    for (const auto& b : batches) graph.run(b, step);
  } catch (const std::exception& e) {
    FAIL() << e.what();
  }
  EXPECT_EQ(graph.replays(), 7);
  const auto replayed = grads();
  for (size_t i = 0; i < eager.size(); ++i)
    EXPECT_LE((replayed[i] - eager[i]).norm().item<double>(), 1e-5 * eager[i].norm().item<double>()) << i;
}

// Finding: a failed capture (here a host synchronization in the micro-step) ends the capture and
// releases its pool (Note [a failed capture]); before, the caching allocator kept the capture
// registered, and a block used on a second stream was never freed again. The message names CUDA's
// error and the remedy; a capture afterwards works.
TEST(GpuGraphs, AFailedCaptureLeavesNoCaptureStateBehind) {
  VDP_REQUIRE_GPU();
  const torch::Device dev(torch::kCUDA, 0);
  const ComputeStreamScope compute(dev);
  const Batch b{torch::randn({8, 16}, dev), torch::randn({8, 4}, dev), {}};
  {
    MicroStepGraph graph(dev, 8, /*warmup=*/1);
    auto syncing = [&](const Batch& batch) { (void)batch.x.sum().item<float>(); };
    graph.run(b, syncing);  // eager warm-up
    try {
      graph.run(b, syncing);
      FAIL() << "a host synchronization was captured";
    } catch (const InternalError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("could not be captured"), std::string::npos) << msg;
      EXPECT_NE(msg.find("synchronizes with the host"), std::string::npos) << msg;
    }
  }
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusActive;
  ASSERT_EQ(cudaStreamIsCapturing(c10::cuda::getCurrentCUDAStream(0).stream(), &status), cudaSuccess);
  EXPECT_EQ(status, cudaStreamCaptureStatusNone);
  // A block used on a second stream is freed once that stream is done with it.
  auto allocated = [] {
    return c10::cuda::CUDACachingAllocator::getDeviceStats(0).allocated_bytes[0].current;
  };
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const int64_t before = allocated();
  {
    torch::Tensor x = torch::ones({1 << 20}, dev);  // 4 MiB
    const c10::cuda::CUDAStream other = c10::cuda::getStreamFromPool(false, 0);
    c10::cuda::CUDACachingAllocator::recordStream(x.storage().data_ptr(), other);
  }
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const torch::Tensor y = torch::ones({1}, dev);  // an allocation processes the freed blocks' events
  EXPECT_LT(allocated() - before, 1 << 20) << "a block used on another stream was not freed after the failed capture";
  // And a capture still works.
  MicroStepGraph again(dev, 8, /*warmup=*/1);
  torch::Tensor acc = torch::zeros({}, dev);
  auto fine = [&](const Batch& batch) { acc.add_(batch.x.sum()); };
  for (int i = 0; i < 3; ++i) again.run(b, fine);
  EXPECT_EQ(again.replays(), 2);
  EXPECT_NEAR(acc.item<double>(), 3 * b.x.sum().item<double>(), 1e-3);
}

// A loss hook runs on the host at each micro-step, which replays never do: refused with graphs.
TEST(GpuGraphs, ALossHookIsRefusedWithGraphs) {
  VDP_REQUIRE_GPU();
  Config cfg = fp16_window_config("adam", 1, "1024");
  cfg.cuda_graphs = true;
  Trainer t(cfg, make_task(cfg), gpu_comm());
  try {
    t.on_loss([](const StepRecord&, int64_t, const Batch&, LossSum&) {});
    FAIL() << "a loss hook was accepted with --cuda-graphs";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--cuda-graphs"), std::string::npos) << e.what();
  }
}
#endif

TEST(GpuTrain, DeterministicRunsAndResumeAreBitExact) {
  VDP_REQUIRE_GPU();
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("vdp-gpu-test-" + std::to_string(::getpid()));
  // A conv net (cuDNN) with momentum SGD; checkpoints every 5 steps.
  const std::vector<std::string> base = {"--dataset", "bce-toy", "--model", "seed-convnet", "--samples", "256",
                                         "--global-batch", "32", "--micro-batch", "8", "--epochs", "2",
                                         "--momentum", "0.9", "--lr", "0.05", "--device", kDevice,
                                         "--deterministic"};
  const auto a = testing::run_vdp(base, gpu_comm());
  const auto b = testing::run_vdp(base, gpu_comm());
  EXPECT_TRUE(torch::equal(a.params, b.params)) << "two --deterministic runs differ: " << rel_diff(a.params, b.params);
  // Stopped after 7 steps (checkpoint at 5), resumed: equals the uninterrupted run.
  testing::run_vdp(with(base, {"--checkpoint-dir", dir.string(), "--checkpoint-every", "5", "--max-steps", "7"}),
                   gpu_comm());
  fs::remove(dir / "step-0000000007" / "manifest.json");  // as if killed while writing step 7
  const auto resumed = testing::run_vdp(with(base, {"--checkpoint-dir", dir.string(), "--resume", "auto"}), gpu_comm());
  EXPECT_TRUE(torch::equal(resumed.params, a.params)) << rel_diff(resumed.params, a.params);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) ::system(("rm -rf '" + e.path().string() + "'").c_str());
  fs::remove(dir, ec);
}

// --- Memory: a real out-of-memory error, --micro-batch auto, recomputation under autocast --------

// The caching allocator is held to 1.3x what chunks of 256 samples needed, so whole micro-batches of
// 2048 run out of device memory for real: the run recovers by halving its chunk on its own and ends
// with the parameters of the run that used chunks of 256 from the start.
TEST(GpuMemory, RealOutOfMemoryIsRecoveredWithTheSameResult) {
  VDP_REQUIRE_GPU();
  if (!kCuda) GTEST_SKIP() << "a real out-of-memory error needs a device whose allocator can be limited";
#ifndef VDP_GPU_TESTS_ON_CPU
  const torch::Device cuda(torch::kCUDA, 0);
  const std::vector<std::string> base = {"--dataset", "regression", "--model", "mlp", "--hidden", "4096",
                                         "--samples", "4096", "--global-batch", "2048", "--micro-batch", "2048",
                                         "--max-steps", "3", "--optimizer", "adam", "--lr", "1e-4", "--seed", "7",
                                         "--device", "cuda"};
  c10::cuda::CUDACachingAllocator::emptyCache();
  reset_peak_memory(cuda);
  const auto ref = testing::run_chunked(with(base, {"--chunk", "256"}), {}, gpu_comm());
  const int64_t needed = peak_memory(cuda);
  size_t free = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free, &total), cudaSuccess);
  c10::cuda::CUDACachingAllocator::emptyCache();
  c10::cuda::CUDACachingAllocator::setMemoryFraction(1.3 * static_cast<double>(needed) / static_cast<double>(total), 0);
  testing::ChunkedRun got;
  try {
    got = testing::run_chunked(base, {}, gpu_comm());
  } catch (...) {
    c10::cuda::CUDACachingAllocator::setMemoryFraction(1.0, 0);
    throw;
  }
  c10::cuda::CUDACachingAllocator::setMemoryFraction(1.0, 0);
  c10::cuda::CUDACachingAllocator::emptyCache();
  ASSERT_FALSE(got.recoveries.empty()) << "no out-of-memory error at " << needed << " bytes x 1.3";
  EXPECT_LE(got.final_chunk, 512);
  EXPECT_LE(rel_diff(got.params, ref.params), 1e-6);
#endif
}

// The search on the device: its choice fits the budget, binds below B/W, and training with it stays
// within the budget (by the caching allocator's peak) and equals the full batch.
TEST(GpuMemory, AutoMicroBatchFitsItsBudgetAndTrainsLikeTheFullBatch) {
  VDP_REQUIRE_GPU();
  const torch::Device dev(kDeviceType, kCuda ? 0 : -1);
  const std::vector<std::string> base = {"--dataset", "regression", "--model", "mlp", "--hidden", "2048",
                                         "--samples", "8192", "--global-batch", "4096", "--max-steps", "3",
                                         "--optimizer", "adam", "--lr", "1e-4", "--seed", "9", "--device", kDevice};
  Config cfg = testing::config_from(with(base, {"--micro-batch", "auto", "--memory-budget", "160M"}));
  cfg.quiet = true, cfg.eval = false;
  release_cached_memory(dev);
  const int64_t live_before = live_memory(dev);
  Trainer trainer(cfg, make_task(cfg), gpu_comm());
  const MicroBatchChoice c = trainer.micro_batch_choice();
  EXPECT_LE(c.peak_bytes, c.budget_bytes);
  EXPECT_LT(c.fits.at(0), 4096) << "the budget must bind for this test to mean something";
  reset_peak_memory(dev);
  trainer.fit();
  if (kCuda) {
    // Slack for what the search does not count on the device: the next micro-batch copied ahead.
    EXPECT_LE(peak_memory(dev) - live_before, c.budget_bytes * 1.15) << "chose " << c.fits.at(0);
  }
  const auto full = testing::run_vdp(with(base, {"--micro-batch", "4096"}), gpu_comm());
  const auto got = testing::run_vdp(with(base, {"--micro-batch", "auto", "--memory-budget", "160M"}), gpu_comm());
  EXPECT_LE(rel_diff(got.params, full.params), 1e-5);
}

// Recomputation under fp16 and bf16 autocast on the device: the second run must be under the same
// autocast state, or its gradients would differ. Deterministic kernels, so bits can be compared.
TEST(GpuMemory, RecomputeUnderAutocastGivesTheSameGradients) {
  VDP_REQUIRE_GPU();
  enable_determinism();
  const torch::Device dev(kDeviceType, kCuda ? 0 : -1);
  for (Precision p : {Precision::Bf16, Precision::Fp16}) {
    torch::manual_seed(3);
    Gpt gpt(GptShape{64, 32, 3, 4, 64});
    gpt.to(dev);
    Batch b;
    b.x = torch::randint(0, 64, {4, 32}, torch::kInt64).to(dev);
    const auto target = torch::randint(0, 64, {4, 32}, torch::kInt64).to(dev);
    auto run = [&](bool recompute) {
      gpt.set_recompute(recompute);
      gpt.zero_grad();
      torch::Tensor out;
      {
        AutocastGuard autocast(dev, p);
        out = gpt.forward(b);
      }
      torch::cross_entropy_loss(out.reshape({-1, 64}).to(torch::kFloat32), target.reshape({-1})).backward();
      std::vector<torch::Tensor> g;
      for (auto& t : gpt.parameters()) g.push_back(t.grad().clone());
      return g;
    };
    const auto plain = run(false), plain_again = run(false), again = run(true);
    for (size_t i = 0; i < plain.size(); ++i) {
      ASSERT_TRUE(torch::equal(plain[i], plain_again[i])) << "not deterministic: parameter " << i;
      EXPECT_TRUE(torch::equal(plain[i], again[i])) << (p == Precision::Bf16 ? "bf16" : "fp16") << " parameter " << i;
    }
  }
}

}  // namespace
}  // namespace vdp
