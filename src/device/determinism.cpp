#include "vdp/device/determinism.h"

#include <ATen/Context.h>

#include <cstdlib>

namespace vdp {

void enable_determinism() {
  // cuBLAS picks reduction orders by workspace: a fixed workspace makes them fixed.
  setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
  at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/false);
  at::globalContext().setDeterministicCuDNN(true);
  at::globalContext().setBenchmarkCuDNN(false);
}

bool is_nondeterministic_op_error(const std::exception& e) {
  return std::string(e.what()).find("does not have a deterministic implementation") != std::string::npos;
}

}  // namespace vdp
