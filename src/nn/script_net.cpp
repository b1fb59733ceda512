#include "vdp/nn/script_net.h"

#include <c10/util/Exception.h>

#include <map>
#include <memory>
#include <sstream>
#include <vector>

#include "vdp/core/error.h"

namespace vdp {
namespace {

std::vector<std::string> split_name(const std::string& name) {
  std::vector<std::string> parts;
  std::stringstream ss(name);
  for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
  return parts;
}

std::string first_line(const c10::Error& e) {
  std::string s = e.what_without_backtrace();
  return s.substr(0, s.find('\n'));
}

}  // namespace

ScriptNet::ScriptNet(const std::string& path) {
  try {
    module_ = torch::jit::load(path, torch::kCPU);
  } catch (const c10::Error& e) {
    VDP_FAIL("--model-file '", path, "' is not a TorchScript module (", first_line(e),
             "); save one in Python with torch.jit.script(model).save(path) or torch.jit.trace(model, x).save(path)");
  }
  // Mirror the module tree: nn::Module names hold no dots, so "layer1.0.conv1.weight" becomes the
  // parameter "weight" of the submodules layer1 → 0 → conv1. The tensors are the script module's
  // own (same TensorImpl): moving or casting them here moves them there.
  std::map<std::string, std::shared_ptr<torch::nn::Module>> nodes;
  auto owner = [&](const std::vector<std::string>& parts) -> torch::nn::Module& {
    torch::nn::Module* m = this;
    std::string path_so_far;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      path_so_far += (i ? "." : "") + parts[i];
      auto it = nodes.find(path_so_far);
      if (it == nodes.end()) {
        auto child = std::make_shared<torch::nn::Module>(parts[i]);
        m->register_module(parts[i], child);
        it = nodes.emplace(path_so_far, child).first;
      }
      m = it->second.get();
    }
    return *m;
  };
  int64_t trainable = 0;
  for (const auto& p : module_.named_parameters(/*recurse=*/true)) {
    VDP_CHECK(p.value.is_floating_point(), "--model-file '", path, "': parameter '", p.name,
              "' is not floating point; vdp trains floating-point parameters only");
    const auto parts = split_name(p.name);
    owner(parts).register_parameter(parts.back(), p.value, p.value.requires_grad());
    trainable += p.value.requires_grad();
  }
  for (const auto& b : module_.named_buffers(/*recurse=*/true)) {
    const auto parts = split_name(b.name);
    owner(parts).register_buffer(parts.back(), b.value);
  }
  VDP_CHECK(trainable > 0, "--model-file '", path, "': the module has no trainable parameters");
  train(true);
}

torch::Tensor ScriptNet::forward(const Batch& batch) {
  torch::jit::IValue out = module_.forward({batch.x});
  VDP_CHECK(out.isTensor(), "the TorchScript module's forward must return one tensor (it returned ", out.tagKind(), ")");
  return out.toTensor();
}

void ScriptNet::train(bool on) {
  torch::nn::Module::train(on);
  module_.train(on);
}

}  // namespace vdp
