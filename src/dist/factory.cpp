#include "vdp/dist/factory.h"

#include <torch/cuda.h>

#include "vdp/core/error.h"
#include "vdp/dist/mpi_communicator.h"
#ifdef VDP_WITH_NCCL
#include "vdp/dist/nccl_communicator.h"
#endif

namespace vdp {

bool have_nccl() {
#ifdef VDP_WITH_NCCL
  return true;
#else
  return false;
#endif
}

std::shared_ptr<Communicator> make_communicator(const Config& cfg, const MpiEnv& env) {
  bool cuda = cfg.device == DeviceKind::Cuda;
  if (cfg.device == DeviceKind::Auto) cuda = torch::cuda::is_available();
  if (cuda) {
    VDP_CHECK(torch::cuda::is_available(), "invalid value for --device: cuda, but no CUDA device is visible "
              "(use --device cpu, or check the driver and CUDA_VISIBLE_DEVICES)");
    VDP_CHECK(env.local_rank() < static_cast<int>(torch::cuda::device_count()), "rank ", env.rank(), " on ",
              env.host(), " has local rank ", env.local_rank(), " but the host has ", torch::cuda::device_count(),
              " GPUs (start at most one rank per GPU)");
  }
  BackendKind b = cfg.backend;
  if (b == BackendKind::Auto) b = env.size() == 1 ? BackendKind::Self : (cuda ? BackendKind::Nccl : BackendKind::Mpi);
  const torch::Device device = cuda ? torch::Device(torch::kCUDA, env.local_rank()) : torch::Device(torch::kCPU);
  switch (b) {
    case BackendKind::Self:
      VDP_CHECK(env.size() == 1, "invalid value for --backend: self at world size ", env.size(),
                " (self is for one process; use auto, mpi or nccl)");
      return std::make_shared<SelfCommunicator>(device);
    case BackendKind::Mpi:
      VDP_CHECK(!cuda, "invalid value for --backend: mpi with --device cuda (the MPI backend moves CPU tensors; "
                "use nccl or auto)");
      if (!env.active()) return std::make_shared<SelfCommunicator>(device);
      return std::make_shared<MpiCommunicator>(env.world());
    case BackendKind::Nccl:
      VDP_CHECK(cuda, "invalid value for --backend: nccl with --device cpu (NCCL moves CUDA tensors; use --device "
                "cuda, or --backend mpi)");
#ifdef VDP_WITH_NCCL
      return std::make_shared<NcclCommunicator>(env.world(), env.rank(), env.size(), env.local_rank());
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
