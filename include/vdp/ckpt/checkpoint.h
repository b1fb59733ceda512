// Checkpoints (include/vdp/README.md, "Checkpoints"). A checkpoint is a folder `step-<N>` under the checkpoint directory:
//   weights.safetensors    parameters and buffers (loadable by Python's safetensors / torch)
//   optimizer.safetensors  per-parameter optimizer state (SGD momentum, Adam moments and steps)
//   trainer.safetensors    the rest of the tensors that resume needs (RNG state, ...)
//   state.json             step, epoch, plan parameters, the configuration that made it
//   manifest.json          size and CRC-32 of every file above; written last
// Rank 0 writes it into a temporary folder, fsyncs every file, renames the folder into place and
// fsyncs the parent, so a crash at any moment never leaves a half checkpoint under a step name.
// Loading verifies the manifest before parsing anything and checks every tensor's name, shape and
// dtype against the model before copying: a bad checkpoint is rejected whole (vdp::UserError).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "vdp/ckpt/safetensors.h"

namespace vdp {

struct CheckpointData {
  NamedTensors weights;
  NamedTensors optimizer;
  NamedTensors trainer;
  nlohmann::json state;  // object
};

// Writes `data` as the checkpoint of `step` under `dir` (created if missing), then deletes all but
// the newest `keep_last` checkpoints (keep_last <= 0 keeps all). Returns the checkpoint's path.
std::string save_checkpoint(const std::string& dir, int64_t step, const CheckpointData& data, int keep_last);

// Path of the newest complete checkpoint under `dir` (one with a manifest), or "" if none.
std::string latest_checkpoint(const std::string& dir);
// Paths of the complete checkpoints under `dir`, oldest first.
std::vector<std::string> list_checkpoints(const std::string& dir);

// Reads and verifies a checkpoint folder. Throws UserError naming the file and the problem.
CheckpointData load_checkpoint(const std::string& path);

// Removes a file or folder tree with POSIX calls (Note [std::filesystem::remove_all] in the source).
void remove_tree(const std::string& path);

// CRC-32 (zlib) of a file's bytes; also returns its size.
uint32_t file_crc32(const std::string& path, uint64_t* size);

}  // namespace vdp
