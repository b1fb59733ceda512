#include "vdp/optim/exchange.h"

#include "vdp/grad/reducer.h"
#include "vdp/optim/optim.h"

namespace vdp {
namespace {

class ReplicatedExchange final : public GradExchange {
 public:
  ReplicatedExchange(FlatGrads& flat, const std::vector<torch::Tensor>& params, std::shared_ptr<Communicator> comm,
                     int64_t bucket_bytes, bool overlap)
      : comm_(comm), params_(params), reducer_(flat, params, std::move(comm), bucket_bytes, overlap) {
    for (const auto& p : params_) grads_.push_back(p.grad());
    for (const auto& g : flat.grads()) flat_grads_.push_back(g);
  }
  void arm() override { reducer_.arm(); }
  bool disarm() override { return reducer_.disarm(); }
  void finish() override { reducer_.finish(); }
  const std::vector<torch::Tensor>& stepped() const override { return params_; }
  // The flat buffers' gradient regions: one tensor each for unscaling and clipping.
  const std::vector<torch::Tensor>& stepped_grads() const override { return flat_grads_; }
  // The gradients are the same on every rank after the all-reduce: so are the flag and the norms.
  torch::Tensor agree(const torch::Tensor&, bool norms) override { return norms ? grad_norms(grads_) : torch::Tensor(); }
  void gather() override {}
  NamedTensors optimizer_state(torch::optim::Optimizer& opt) override {
    return comm_->rank() == 0 ? vdp::optimizer_state(opt, params_) : NamedTensors{};
  }
  void load_optimizer_state(torch::optim::Optimizer& opt, const NamedTensors& state,
                            const std::string& source) override {
    vdp::load_optimizer_state(opt, params_, state, source);
  }
  int64_t reduction_bytes() const override { return reducer_.bytes(); }
  int64_t wire_bytes() const override { return ring_all_reduce_bytes(reducer_.bytes(), comm_->size()); }

 private:
  std::shared_ptr<Communicator> comm_;
  std::vector<torch::Tensor> params_, grads_, flat_grads_;
  WindowReducer reducer_;
};

}  // namespace

int64_t ring_all_reduce_bytes(int64_t bytes, int world) { return 2 * bytes * (world - 1) / world; }

std::unique_ptr<GradExchange> make_replicated_exchange(FlatGrads& flat, const std::vector<torch::Tensor>& params,
                                                       std::shared_ptr<Communicator> comm, int64_t bucket_bytes,
                                                       bool overlap) {
  return std::make_unique<ReplicatedExchange>(flat, params, std::move(comm), bucket_bytes, overlap);
}

}  // namespace vdp
