// A training set kept on the GPU (`--data-on-device`, include/vdp/README.md, "The GPU path"): every sample is gathered
// once, in chunks, into device tensors; a micro-batch is then an index_select on the device, so
// nothing of the data crosses the bus while training (the sample ids travel, from pinned memory).
// Batches are bit-identical to those of the wrapped dataset moved to the device. The trainer's
// producer (data/loader.h) calls get() on its copy stream, so the gather overlaps compute.
//
// Refused with a UserError (exit 2) when the samples do not have one shape (nothing can hold them as
// one tensor) or when they need more than half of the device's free memory (the rest is for the
// model, its activations and the allocator's slack).
#pragma once

#include <memory>

#include "vdp/data/dataset.h"

namespace vdp {

class ResidentDataset : public Dataset {
 public:
  ResidentDataset(const std::shared_ptr<const Dataset>& data, const torch::Device& device);
  int64_t size() const override { return n_; }
  // The samples `indices`, on the device.
  Batch get(const std::vector<int64_t>& indices) const override;
  // Bytes the samples take on the device.
  int64_t bytes() const { return bytes_; }

 private:
  torch::Device device_;
  int64_t n_ = 0, bytes_ = 0;
  Batch all_;  // every sample, on the device
};

}  // namespace vdp
