#include "vdp/dist/communicator.h"

#include <ATen/ATen.h>

#include <cstring>

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

std::string Communicator::broadcast_string(const std::string& s, int root) {
  if (size() == 1) return s;
  const auto n = static_cast<int64_t>(broadcast_host({static_cast<double>(s.size())}, root)[0]);
  auto t = torch::zeros({n}, torch::kUInt8);
  if (rank() == root && n > 0) std::memcpy(t.data_ptr(), s.data(), static_cast<size_t>(n));
  t = t.to(device());
  broadcast(t, root);
  t = t.cpu();
  return std::string(reinterpret_cast<const char*>(t.data_ptr()), static_cast<size_t>(n));
}

void Communicator::reduce_scatter_sum(const torch::Tensor& t) {
  VDP_ASSERT(t.numel() % size() == 0, "reduce-scatter of ", t.numel(), " elements over ", size(), " ranks");
  all_reduce_sum(t);
}

void Communicator::all_gather(const torch::Tensor& t) {
  VDP_ASSERT(t.numel() % size() == 0, "all-gather of ", t.numel(), " elements over ", size(), " ranks");
  const int64_t c = t.numel() / size();
  if (rank() > 0) t.narrow(0, 0, rank() * c).zero_();
  if (rank() + 1 < size()) t.narrow(0, (rank() + 1) * c, t.numel() - (rank() + 1) * c).zero_();
  all_reduce_sum(t);
}

void SelfCommunicator::reduce_scatter_sum(const torch::Tensor& t) {
  VDP_ASSERT(t.device() == device_, "tensor on ", t.device(), " but communicator on ", device_);
}

void SelfCommunicator::all_gather(const torch::Tensor& t) {
  VDP_ASSERT(t.device() == device_, "tensor on ", t.device(), " but communicator on ", device_);
}

void SelfCommunicator::all_reduce_sum(const torch::Tensor& t) {
  VDP_ASSERT(t.device() == device_, "tensor on ", t.device(), " but communicator on ", device_);
}

void SelfCommunicator::broadcast(const torch::Tensor& t, int root) {
  VDP_ASSERT(root == 0 && t.device() == device_);
}

}  // namespace vdp
