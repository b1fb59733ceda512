// Picks the communicator and device from the configuration and the MPI environment.
#pragma once

#include <memory>

#include "vdp/config/config.h"
#include "vdp/dist/communicator.h"
#include "vdp/dist/mpi_env.h"

namespace vdp {

// device=cuda uses GPU local_rank; backend=auto is self at W=1, NCCL on CUDA, MPI on the CPU.
// Throws UserError for impossible combinations (NCCL on CPU, CUDA without a GPU, self at W>1).
std::shared_ptr<Communicator> make_communicator(const Config& cfg, const MpiEnv& env);

}  // namespace vdp
