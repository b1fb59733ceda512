// safetensors read/write (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
// length, a JSON header {name: {dtype, shape, data_offsets}}, then raw little-endian tensor bytes.
// Files written here load with Python's `safetensors` and `torch`. Reading validates everything the
// header claims before touching data: sizes, offsets inside the file, no overlaps, no gaps.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace vdp {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Writes atomically: a temporary file in the same folder, fsync, rename, fsync of the folder.
// A crash never leaves a half-written file under `path`.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads and validates; throws vdp::UserError naming the file and the problem. CPU tensors.
NamedTensors load_safetensors(const std::string& path, std::map<std::string, std::string>* metadata = nullptr);
NamedTensors parse_safetensors(const uint8_t* data, size_t size, const std::string& name,
                               std::map<std::string, std::string>* metadata = nullptr);

// A module's parameters and buffers by their dotted names (CPU copies).
NamedTensors module_state(const torch::nn::Module& module);
// Copies a file's tensors into `module` in place. Every parameter and buffer must be present with
// the same shape and dtype, and the file may hold nothing else; otherwise UserError and the module
// is left untouched (everything is checked before anything is copied).
void load_module_state(torch::nn::Module& module, const std::string& path);
// The same from tensors already read; `source` names them in messages.
void load_module_state(torch::nn::Module& module, const NamedTensors& tensors, const std::string& source);

}  // namespace vdp
