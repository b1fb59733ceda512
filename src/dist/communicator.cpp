#include "vdp/dist/communicator.h"

#include <ATen/ATen.h>

#include "vdp/core/error.h"

namespace vdp {

namespace {
struct DoneWork : Work {
  void wait() override {}
};
}  // namespace

std::unique_ptr<Work> Communicator::all_reduce_sum_async(const torch::Tensor& t) {
  all_reduce_sum(t);
  return std::make_unique<DoneWork>();
}

std::vector<double> Communicator::all_reduce_host(const std::vector<double>& values) {
  auto t = torch::tensor(values, torch::kFloat64).to(device());
  all_reduce_sum(t);
  t = t.cpu();
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

std::vector<double> Communicator::broadcast_host(const std::vector<double>& values, int root) {
  auto t = torch::tensor(values, torch::kFloat64).to(device());
  broadcast(t, root);
  t = t.cpu();
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

void SelfCommunicator::all_reduce_sum(const torch::Tensor& t) {
  VDP_ASSERT(t.device() == device_, "tensor on ", t.device(), " but communicator on ", device_);
}

void SelfCommunicator::broadcast(const torch::Tensor& t, int root) {
  VDP_ASSERT(root == 0 && t.device() == device_);
}

}  // namespace vdp
