// The device a thread works on.
#pragma once

#include <torch/types.h>

#include <optional>

namespace vdp {

// Makes `device` the calling thread's current CUDA device (c10::cuda::set_device) and records it
// for bound_device(); on the CPU only records it. Each rank calls it once at start on its main
// thread, and every thread vdp starts that may touch the device calls it first: otherwise a CUDA
// call in that thread (a device guard restoring "its" device, an event query) runs on device 0 and
// creates a context there (about 0.5 GiB on every rank's GPU 0).
void bind_device(const torch::Device& device);

// The device the calling thread last bound with bind_device(), if any.
std::optional<torch::Device> bound_device();

}  // namespace vdp
