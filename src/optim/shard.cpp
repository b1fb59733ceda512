#include "vdp/optim/shard.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>

#include "vdp/core/error.h"
#include "vdp/optim/optim.h"

namespace vdp {
namespace {

// One parameter's part of this rank's shard: parameter `param`, elements [at, at + len) of the
// shard of buffer `group`.
struct Piece {
  size_t param, group;
  int64_t at, len;
};

class ShardedExchange final : public GradExchange {
 public:
  ShardedExchange(FlatGrads& flat, const std::vector<torch::Tensor>& params, std::shared_ptr<Communicator> comm)
      : flat_(flat), params_(params), comm_(std::move(comm)), world_(comm_->size()), rank_(comm_->rank()) {
    const auto& padded = flat_.padded_grads();
    for (const auto& region : padded) {
      VDP_ASSERT(region.numel() % shard_multiple(world_) == 0, "a gradient region of ", region.numel(),
                 " elements is not padded for ", world_, " shards");
      chunk_.push_back(region.numel() / world_);
      param_buffers_.push_back(torch::zeros({region.numel()}, region.options()));
    }
    {
      // The parameters become views into the flat parameter buffers, laid out as their gradients.
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < params_.size(); ++i) {
        const GradSlot& s = flat_.slot(i);
        torch::Tensor view = param_buffers_[s.group].narrow(0, s.offset, s.numel);
        view.copy_(params_[i].detach().reshape(-1));
        params_[i].set_data(view.view(params_[i].sizes()));
      }
    }
    for (size_t g = 0; g < padded.size(); ++g) {
      torch::Tensor shard = param_buffers_[g].narrow(0, rank_ * chunk_[g], chunk_[g]);
      torch::Tensor grad = padded[g].narrow(0, rank_ * chunk_[g], chunk_[g]);
      shard.mutable_grad() = grad;
      stepped_.push_back(shard);
      stepped_grads_.push_back(grad);
    }
    std::vector<int64_t> owner;
    for (size_t i = 0; i < params_.size(); ++i) {
      const GradSlot& s = flat_.slot(i);
      const int64_t lo = std::max(s.offset, rank_ * chunk_[s.group]);
      const int64_t hi = std::min(s.offset + s.numel, (rank_ + 1) * chunk_[s.group]);
      if (lo >= hi) continue;
      pieces_.push_back({i, s.group, lo - rank_ * chunk_[s.group], hi - lo});
      owner.push_back(static_cast<int64_t>(i));
    }
    piece_param_ = torch::tensor(owner, torch::kInt64).to(padded[0].device());
  }

  void arm() override {}
  bool disarm() override { return true; }  // nothing starts before finish()

  void finish() override {
    for (const auto& region : flat_.padded_grads()) comm_->reduce_scatter_sum(region);
    comm_->all_reduce_sum(flat_.scalar_region());
  }

  const std::vector<torch::Tensor>& stepped() const override { return stepped_; }
  const std::vector<torch::Tensor>& stepped_grads() const override { return stepped_grads_; }

  torch::Tensor agree(const torch::Tensor& found_inf, bool norms) override {
    const int64_t n = norms ? static_cast<int64_t>(params_.size()) : 0;
    torch::Tensor v = torch::zeros({1 + n}, found_inf.options().dtype(torch::kDouble));
    v.narrow(0, 0, 1).copy_(found_inf);
    if (norms && !pieces_.empty()) {
      std::vector<torch::Tensor> views;
      for (const Piece& p : pieces_) views.push_back(stepped_grads_[p.group].narrow(0, p.at, p.len));
      const torch::Tensor part = at::stack(at::_foreach_norm(views, 2)).to(torch::kDouble);
      v.narrow(0, 1, n).index_add_(0, piece_param_, part * part);
    }
    comm_->all_reduce_sum(v);
    found_inf.copy_(v.narrow(0, 0, 1).clamp_max(1.0));
    if (!norms) return {};
    return v.narrow(0, 1, n).sqrt().to(params_[0].scalar_type());
  }

  void gather() override {
    for (const auto& b : param_buffers_) comm_->all_gather(b);
  }

  NamedTensors optimizer_state(torch::optim::Optimizer& opt) override {
    // This rank's shard state as "<group>.<field>", then each parameter's full tensors assembled on
    // rank 0 from the pieces their owners broadcast, one parameter at a time.
    const NamedTensors mine = vdp::optimizer_state(opt, stepped_);
    const bool leader = rank_ == 0;
    NamedTensors out;
    for (size_t i = 0; i < params_.size(); ++i) {
      const GradSlot& s = flat_.slot(i);
      const std::string group = std::to_string(s.group) + ".";
      for (const auto& [key, shard] : mine) {
        if (key.rfind(group, 0) != 0) continue;
        const std::string field = key.substr(group.size());
        const std::string name = std::to_string(i) + "." + field;
        if (field == "step") {  // the same count on every rank and for every parameter of the buffer
          if (leader) out.emplace_back(name, shard.clone());
          continue;
        }
        torch::Tensor full = leader ? torch::empty({s.numel}, shard.options()) : torch::Tensor();
        const int64_t c = chunk_[s.group];
        for (int q = 0; q < world_; ++q) {
          const int64_t lo = std::max(s.offset, q * c), hi = std::min(s.offset + s.numel, (q + 1) * c);
          if (lo >= hi) continue;
          torch::Tensor piece = q == rank_ ? shard.narrow(0, lo - q * c, hi - lo).to(comm_->device())
                                           : torch::empty({hi - lo}, shard.options().device(comm_->device()));
          comm_->broadcast(piece.contiguous(), q);
          if (leader) full.narrow(0, lo - s.offset, hi - lo).copy_(piece.cpu());
        }
        if (leader) out.emplace_back(name, full.view(params_[i].sizes()));
      }
    }
    return out;
  }

  void load_optimizer_state(torch::optim::Optimizer& opt, const NamedTensors& state,
                            const std::string& source) override {
    // Every tensor checked against its parameter (the replicated load's checks), then this rank's
    // pieces copied into shard tensors and loaded as the shard optimizer's state.
    std::map<std::pair<size_t, std::string>, torch::Tensor> by_param;
    for (const auto& [name, t] : state) {
      const size_t dot = name.find('.');
      size_t i = params_.size();
      try {
        i = dot == std::string::npos ? params_.size() : std::stoul(name.substr(0, dot));
      } catch (const std::exception&) {
      }
      VDP_CHECK(i < params_.size(), "'", source, "' holds optimizer tensor '", name,
                "' that this model and optimizer do not have (checkpoint of another model or optimizer?)");
      const std::string field = name.substr(dot + 1);
      if (field == "step") {
        VDP_CHECK(t.numel() == 1 && t.scalar_type() == torch::kInt64, "'", source, "': optimizer tensor ", name,
                  " must be one int64");
      } else {
        VDP_CHECK(t.sizes() == params_[i].sizes() && t.scalar_type() == params_[i].scalar_type(), "'", source,
                  "': optimizer tensor ", name, " is ", t.scalar_type(), t.sizes(), " but parameter ", i, " is ",
                  params_[i].scalar_type(), params_[i].sizes(), " (checkpoint of another model or dtype?)");
      }
      by_param[{i, field}] = t;
    }
    NamedTensors shards;
    for (size_t g = 0; g < stepped_.size(); ++g) {
      std::vector<std::string> fields;  // in the order the first parameter of the buffer has them
      std::vector<size_t> members;
      for (size_t i = 0; i < params_.size(); ++i)
        if (flat_.slot(i).group == g) members.push_back(i);
      if (members.empty()) continue;
      const std::string first = std::to_string(members.front()) + ".";
      for (const auto& entry : state)
        if (entry.first.rfind(first, 0) == 0) fields.push_back(entry.first.substr(first.size()));
      for (const std::string& field : fields) {
        for (size_t i : members)
          VDP_CHECK(by_param.count({i, field}), "'", source, "' lacks optimizer tensor ", i, ".", field,
                    " (checkpoint of another optimizer?)");
        const std::string name = std::to_string(g) + "." + field;
        if (field == "step") {
          shards.emplace_back(name, by_param.at({members.front(), field}));
          continue;
        }
        torch::Tensor shard = torch::zeros({chunk_[g]}, stepped_[g].options().device(torch::kCPU));
        for (const Piece& p : pieces_) {
          if (p.group != g) continue;
          const GradSlot& s = flat_.slot(p.param);
          const int64_t lo = rank_ * chunk_[g] + p.at;
          shard.narrow(0, p.at, p.len).copy_(by_param.at({p.param, field}).reshape(-1).narrow(0, lo - s.offset, p.len));
        }
        shards.emplace_back(name, shard);
      }
    }
    vdp::load_optimizer_state(opt, stepped_, shards, source);
  }

  int64_t reduction_bytes() const override {
    int64_t n = 0;
    for (const auto& r : flat_.padded_grads()) n += r.numel() * static_cast<int64_t>(r.element_size());
    const torch::Tensor& s = flat_.scalar_region();
    return n + s.numel() * static_cast<int64_t>(s.element_size());
  }

  int64_t wire_bytes() const override {
    const torch::Tensor& s = flat_.scalar_region();
    const int64_t scalars = s.numel() * static_cast<int64_t>(s.element_size());
    const int64_t agree = (1 + static_cast<int64_t>(params_.size())) * 8;
    // Reduce-scatter and all-gather: (W-1)/W of the padded buffers each; the two small all-reduces.
    return 2 * (reduction_bytes() - scalars) * (world_ - 1) / world_ + ring_all_reduce_bytes(scalars + agree, world_);
  }

 private:
  FlatGrads& flat_;
  std::vector<torch::Tensor> params_;
  std::shared_ptr<Communicator> comm_;
  int world_, rank_;
  std::vector<int64_t> chunk_;                // [group] shard length
  std::vector<torch::Tensor> param_buffers_;  // [group] the parameters' flat buffer (padded)
  std::vector<torch::Tensor> stepped_, stepped_grads_;
  std::vector<Piece> pieces_;
  torch::Tensor piece_param_;  // [piece] its parameter's index, on the device
};

}  // namespace

std::unique_ptr<GradExchange> make_sharded_exchange(FlatGrads& flat, const std::vector<torch::Tensor>& params,
                                                    std::shared_ptr<Communicator> comm) {
  return std::make_unique<ShardedExchange>(flat, params, std::move(comm));
}

}  // namespace vdp
