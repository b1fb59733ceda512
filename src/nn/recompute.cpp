#include "vdp/nn/recompute.h"

#include <ATen/autocast_mode.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include "vdp/core/error.h"
#include "vdp/core/generator_state.h"

namespace vdp {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What backward needs besides the saved inputs: the block, and the state its first run saw.
struct Recorded : torch::CustomClassHolder {
  Recorded(BlockFn f, const torch::Device& d) : fn(std::move(f)), device(d), rng(d) {}
  BlockFn fn;
  torch::Device device;
  GeneratorState rng;
  std::vector<torch::Tensor> params;
  std::vector<bool> input_requires_grad;
  c10::DeviceType autocast_type = c10::DeviceType::CPU;
  bool autocast = false;
  at::ScalarType autocast_dtype = at::kFloat;
};

// Sets autocast for one device type as it was, and puts it back.
class AutocastAs {
 public:
  AutocastAs(c10::DeviceType type, bool enabled, at::ScalarType dtype)
      : type_(type), enabled_(at::autocast::is_autocast_enabled(type)), dtype_(at::autocast::get_autocast_dtype(type)) {
    at::autocast::set_autocast_enabled(type, enabled);
    at::autocast::set_autocast_dtype(type, dtype);
  }
  ~AutocastAs() {
    at::autocast::set_autocast_enabled(type_, enabled_);
    at::autocast::set_autocast_dtype(type_, dtype_);
  }

 private:
  c10::DeviceType type_;
  bool enabled_;
  at::ScalarType dtype_;
};

struct Recompute : torch::autograd::Function<Recompute> {
  static variable_list forward(AutogradContext* ctx, at::TensorList inputs, at::TensorList params,
                               c10::intrusive_ptr<Recorded> rec) {
    // Autograd records nothing here (the Function's forward runs below it): only `inputs` are kept.
    rec->rng.capture();
    rec->autocast = at::autocast::is_autocast_enabled(rec->autocast_type);
    rec->autocast_dtype = at::autocast::get_autocast_dtype(rec->autocast_type);
    for (const auto& t : inputs) rec->input_requires_grad.push_back(t.requires_grad());
    rec->params = params.vec();
    ctx->save_for_backward(inputs.vec());
    ctx->saved_data["recorded"] = c10::IValue::make_capsule(rec);
    return rec->fn(inputs.vec());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto rec = c10::static_intrusive_pointer_cast<Recorded>(ctx->saved_data["recorded"].toCapsule());
    const variable_list saved = ctx->get_saved_variables();
    const auto& params = rec->params;
    std::vector<torch::Tensor> inputs;
    for (size_t i = 0; i < saved.size(); ++i) inputs.push_back(saved[i].detach().requires_grad_(rec->input_requires_grad[i]));

    // The second run draws the first run's random numbers; the generators then continue as if it
    // had not happened (backward itself draws nothing).
    GeneratorState now(rec->device);
    now.capture();
    rec->rng.restore();
    variable_list outputs;
    {
      torch::AutoGradMode grad(true);
      AutocastAs autocast(rec->autocast_type, rec->autocast, rec->autocast_dtype);
      outputs = rec->fn(inputs);
    }
    now.restore();

    std::vector<torch::Tensor> roots, root_grads, wrt;
    for (size_t i = 0; i < outputs.size(); ++i)
      if (outputs[i].requires_grad() && i < grads.size() && grads[i].defined()) {
        roots.push_back(outputs[i]);
        root_grads.push_back(grads[i]);
      }
    for (const auto& t : inputs)
      if (t.requires_grad()) wrt.push_back(t);
    for (const auto& p : params)
      if (p.requires_grad()) wrt.push_back(p);
    variable_list got;
    if (!roots.empty() && !wrt.empty())
      got = torch::autograd::grad(roots, wrt, root_grads, /*retain_graph=*/false, /*create_graph=*/false,
                                  /*allow_unused=*/true);
    // One gradient per forward argument: the inputs, the parameters, and none for `rec`.
    variable_list out;
    size_t next = 0;
    for (const auto& t : inputs) out.push_back(t.requires_grad() && !got.empty() ? got[next++] : torch::Tensor());
    for (const auto& p : params) out.push_back(p.requires_grad() && !got.empty() ? got[next++] : torch::Tensor());
    out.emplace_back();
    return out;
  }
};

}  // namespace

std::vector<torch::Tensor> checkpoint(BlockFn fn, const std::vector<torch::Tensor>& inputs,
                                      const std::vector<torch::Tensor>& params) {
  bool needs_grad = false;
  for (const auto& t : inputs) needs_grad = needs_grad || t.requires_grad();
  for (const auto& p : params) needs_grad = needs_grad || p.requires_grad();
  if (!torch::GradMode::is_enabled() || !needs_grad) return fn(inputs);
  VDP_CHECK(!inputs.empty(), "vdp::checkpoint needs at least one input tensor");
  const torch::Device device = inputs.front().device();
  auto rec = c10::make_intrusive<Recorded>(std::move(fn), device);
  rec->autocast_type = device.type();
  return Recompute::apply(at::TensorList(inputs), at::TensorList(params), rec);
}

torch::Tensor checkpoint(torch::nn::Module& module, const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                         const torch::Tensor& x) {
  auto out = checkpoint([fn](const std::vector<torch::Tensor>& in) { return std::vector<torch::Tensor>{fn(in[0])}; },
                        {x}, module.parameters());
  return out[0];
}

}  // namespace vdp
