// --deterministic (include/vdp/README.md, "The GPU path"): deterministic algorithms in ATen, cuDNN and cuBLAS, so that two
// runs on one GPU give the same bits and a resumed run continues bit-exactly. Not the default: it
// costs speed on a GPU (README, "Determinism"). On the CPU vdp's runs are deterministic already.
#pragma once

#include <stdexcept>
#include <string>

namespace vdp {

// Turns deterministic algorithms on: CUBLAS_WORKSPACE_CONFIG=:4096:8 (unless set; it must be set
// before the first cuBLAS handle exists, so call this before any CUDA work), ATen's deterministic
// algorithms (an operation without a deterministic implementation throws), cuDNN deterministic
// with benchmarking off. Idempotent.
void enable_determinism();

// True when `e` is LibTorch's error for an operation that has no deterministic implementation
// under --deterministic (vdp-train reports it as bad input, exit 2, naming the operation).
bool is_nondeterministic_op_error(const std::exception& e);

}  // namespace vdp
