// A model from Python: a TorchScript module (torch.jit.script or torch.jit.trace, then .save) trained
// like a built-in model (--model torchscript --model-file FILE.pt). Its parameters and buffers are
// the module's own tensors, registered under the module's own names (conv1.weight, bn1.running_mean,
// ...), so weights vdp saves load back in Python with load_state_dict; train()/eval() reach the
// module's BatchNorm layers, which then behave as --norm batch. forward(batch) calls the module's
// forward(x). TorchScript is deprecated in PyTorch 2.11 but remains the one way to move a trainable
// Python model into LibTorch; it lives behind vdp::Net only, so another importer can replace it.
#pragma once

#include <torch/script.h>

#include <string>

#include "vdp/nn/models.h"

namespace vdp {

class ScriptNet : public Net {
 public:
  // Loads `path` on the CPU. Throws vdp::UserError with one line when the file is no TorchScript
  // archive or the module has nothing to train.
  explicit ScriptNet(const std::string& path);
  torch::Tensor forward(const Batch& batch) override;
  void train(bool on = true) override;

 private:
  torch::jit::Module module_;
};

}  // namespace vdp
