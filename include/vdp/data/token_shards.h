// Token files in llm.c's shard format: a header of 256 little-endian int32 (magic 20240520, version
// 1, token count), then the tokens as uint16. Shards made with llm.c's scripts (GPT-2 tokens, end of
// text 50256) or with launch/make_shards.py (bytes, end of text 256) train as they are.
//
// A token dataset cuts the stream into documents at the end-of-text token (each document starts
// with it, as llm.c writes them) and each document into samples of at most context + 1 tokens:
// x = tokens[:-1], y = tokens[1:]. Documents shorter than the context give short samples; a batch
// is padded to its longest sample and its mask marks the real targets, so the token loss counts
// exactly the real tokens and micro-batches carry different token counts.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "vdp/data/dataset.h"
#include "vdp/data/datasets.h"

namespace vdp {

// The tokens of one shard, checked (magic, version, count against the file size). UserError otherwise.
std::vector<uint16_t> read_token_shard(const std::string& path);

class TokenDataset : public Dataset {
 public:
  TokenDataset(const std::vector<uint16_t>& tokens, int64_t eot, int64_t context);
  int64_t size() const override { return static_cast<int64_t>(starts_.size()); }
  Batch get(const std::vector<int64_t>& indices) const override;
  double mean_targets() const;  // real targets per sample, on average
  int64_t max_token() const { return max_token_; }
  int64_t eot() const { return eot_; }

 private:
  std::vector<int64_t> tokens_;
  std::vector<int64_t> starts_, lengths_;  // each sample: tokens_[start, start + length), length >= 2
  int64_t max_token_ = 0;
  int64_t eot_ = 0;
};

// Every "*train*.bin" shard of `dir` (sorted by name) for training and every "*val*.bin" for
// evaluation (none: no evaluation). `eot` < 0: 50256 when a token is above 256 (GPT-2), else 256.
DatasetPair load_token_shards(const std::string& dir, int64_t context, int64_t eot);

}  // namespace vdp
