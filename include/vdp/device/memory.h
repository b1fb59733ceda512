// Device memory: the caching allocator's blocks released before a retry in smaller pieces, and the
// peak a computation reaches (a counting CPU allocator; the CUDA caching allocator's statistics),
// measured by the micro-batch search (train/micro_batch_search.h) and vdp-bench.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace vdp {

// CUDA: frees the caching allocator's unused blocks (emptyCache), so a retry in smaller pieces finds
// the memory; nothing to do on the CPU.
void release_cached_memory(const torch::Device& device);

// Bytes of tensor storage live on `device` and the most live since the last reset_peak_memory. On
// the CPU this installs (once, process-wide) an allocator that counts around the default one; CPU
// tensors allocated before the first call are not counted (reset, then measure a difference).
int64_t live_memory(const torch::Device& device);
int64_t peak_memory(const torch::Device& device);
void reset_peak_memory(const torch::Device& device);

// Bytes of memory the device has: CUDA, the device's free memory plus what the caching allocator
// holds unused; the CPU, MemAvailable of /proc/meminfo.
int64_t available_memory(const torch::Device& device);

}  // namespace vdp
