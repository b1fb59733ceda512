#include "vdp/core/generator_state.h"

#include <ATen/CPUGeneratorImpl.h>
#ifdef VDP_WITH_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#endif

#include <mutex>

namespace vdp {

GeneratorState::GeneratorState(const torch::Device& device) : device_(device) {}

void GeneratorState::capture() {
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    cpu_ = gen.get_state();
  }
#ifdef VDP_WITH_CUDA
  if (device_.is_cuda()) {
    auto gen = at::cuda::detail::getDefaultCUDAGenerator(device_.index());
    std::lock_guard<std::mutex> lock(gen.mutex());
    cuda_ = gen.get_state();
  }
#endif
}

void GeneratorState::set(torch::Tensor cpu, torch::Tensor cuda) {
  cpu_ = std::move(cpu);
  cuda_ = device_.is_cuda() ? std::move(cuda) : torch::Tensor();
}

void GeneratorState::restore() const {
  if (cpu_.defined()) {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(cpu_);
  }
#ifdef VDP_WITH_CUDA
  if (cuda_.defined()) {
    auto gen = at::cuda::detail::getDefaultCUDAGenerator(device_.index());
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(cuda_);
  }
#endif
}

}  // namespace vdp
