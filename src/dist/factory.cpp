#include "vdp/dist/factory.h"

#include <torch/cuda.h>

#include "vdp/core/error.h"
#include "vdp/core/thread_device.h"
#include "vdp/dist/mpi_communicator.h"
#ifdef VDP_WITH_NCCL
#include "vdp/dist/nccl_communicator.h"
#endif

namespace vdp {

namespace {
std::shared_ptr<Communicator> with_timeout(std::shared_ptr<Communicator> c, const Config& cfg) {
  c->set_timeout(cfg.timeout);
  return c;
}
}  // namespace

std::shared_ptr<Communicator> make_communicator(const Config& cfg, const MpiEnv& env) {
  bool cuda = cfg.device == DeviceKind::Cuda;
  if (cfg.device == DeviceKind::Auto) cuda = torch::cuda::is_available();
  if (cuda) {
    VDP_CHECK(torch::cuda::is_available(), "invalid value for --device: cuda, but no CUDA device is visible "
              "(use --device cpu, or check the driver and CUDA_VISIBLE_DEVICES)");
  }
  // The GPU this rank uses: under Slurm's one-GPU-per-task binding (or any CUDA_VISIBLE_DEVICES of
  // one device) a rank sees exactly one GPU whatever its local rank; otherwise local rank r takes
  // visible GPU r.
  int gpu = 0;
  if (cuda) {
    const int visible = static_cast<int>(torch::cuda::device_count());
    gpu = visible == 1 ? 0 : env.local_rank();
    VDP_CHECK(gpu < visible, "rank ", env.rank(), " on ", env.host(), " has local rank ", env.local_rank(),
              " but sees ", visible, " GPUs (start at most one rank per visible GPU, or give each rank one GPU "
              "with CUDA_VISIBLE_DEVICES / srun --gpus-per-task=1)");
  }
  BackendKind b = cfg.backend;
  if (b == BackendKind::Auto) b = env.size() == 1 ? BackendKind::Self : (cuda ? BackendKind::Nccl : BackendKind::Mpi);
  const torch::Device device = cuda ? torch::Device(torch::kCUDA, gpu) : torch::Device(torch::kCPU);
  // This rank's device, once, on its main thread, before anything touches CUDA (device/compute_stream.h).
  bind_device(device);
  switch (b) {
    case BackendKind::Self:
      VDP_CHECK(env.size() == 1, "invalid value for --backend: self at world size ", env.size(),
                " (self is for one process; use auto, mpi or nccl)");
      return with_timeout(std::make_shared<SelfCommunicator>(device), cfg);
    case BackendKind::Mpi:
      VDP_CHECK(!cuda, "invalid value for --backend: mpi with --device cuda (the MPI backend moves CPU tensors; "
                "use nccl or auto)");
      if (!env.active()) return with_timeout(std::make_shared<SelfCommunicator>(device), cfg);
      return std::make_shared<MpiCommunicator>(env.world(), cfg.timeout);
    case BackendKind::Nccl:
      VDP_CHECK(cuda, "invalid value for --backend: nccl with --device cpu (NCCL moves CUDA tensors; use --device "
                "cuda, or --backend mpi)");
#ifdef VDP_WITH_NCCL
      return std::make_shared<NcclCommunicator>(env.world(), env.rank(), env.size(), gpu, cfg.timeout);
#else
      VDP_FAIL("invalid value for --backend: nccl, but this build has no NCCL (rebuild with the CUDA toolkit and "
               "NCCL installed; CMake sets VDP_WITH_NCCL when it finds them)");
#endif
    case BackendKind::Auto: break;
  }
  VDP_ASSERT(false, "unreachable");
  return nullptr;
}

}  // namespace vdp
