#include "vdp/data/token_shards.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "vdp/core/error.h"
#include "vdp/data/token_shard_header.h"

namespace vdp {

std::vector<uint16_t> read_token_shard(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  VDP_CHECK(f.good(), "cannot open token shard '", path, "'");
  std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  VDP_CHECK_IO(!f.bad(), "cannot read '", path, "'");
  const int64_t count = parse_token_shard_header(bytes.data(), bytes.size(), path);
  std::vector<uint16_t> tokens(static_cast<size_t>(count));
  for (size_t i = 0; i < tokens.size(); ++i) {
    const unsigned char* p = bytes.data() + kTokenShardHeaderBytes + 2 * i;
    tokens[i] = static_cast<uint16_t>(p[0] | (p[1] << 8));
  }
  return tokens;
}

TokenDataset::TokenDataset(const std::vector<uint16_t>& tokens, int64_t eot, int64_t context)
    : tokens_(tokens.begin(), tokens.end()), eot_(eot) {
  const int64_t n = static_cast<int64_t>(tokens_.size());
  int64_t doc = 0;
  while (doc < n) {
    int64_t end = doc + 1;
    while (end < n && tokens_[end] != eot) ++end;  // the next document starts at the next end-of-text
    for (int64_t s = doc; s + 1 < end; s += context) {
      starts_.push_back(s);
      lengths_.push_back(std::min(context + 1, end - s));
    }
    doc = end;
  }
  for (int64_t t : tokens_) max_token_ = std::max(max_token_, t);
}

double TokenDataset::mean_targets() const {
  double total = 0;
  for (int64_t l : lengths_) total += static_cast<double>(l - 1);
  return lengths_.empty() ? 1.0 : total / static_cast<double>(lengths_.size());
}

Batch TokenDataset::get(const std::vector<int64_t>& indices) const {
  int64_t t = 1;
  for (int64_t i : indices) {
    VDP_ASSERT(i >= 0 && i < size(), "sample index ", i, " out of range");
    t = std::max(t, lengths_[static_cast<size_t>(i)] - 1);
  }
  const int64_t n = static_cast<int64_t>(indices.size());
  Batch b;
  b.x = torch::zeros({n, t}, torch::kInt64);
  b.y = torch::zeros({n, t}, torch::kInt64);
  b.mask = torch::zeros({n, t}, torch::kInt64);
  auto x = b.x.accessor<int64_t, 2>(), y = b.y.accessor<int64_t, 2>(), m = b.mask.accessor<int64_t, 2>();
  for (int64_t r = 0; r < n; ++r) {
    const size_t i = static_cast<size_t>(indices[static_cast<size_t>(r)]);
    const int64_t s = starts_[i], len = lengths_[i];
    for (int64_t j = 0; j + 1 < len; ++j) {
      x[r][j] = tokens_[static_cast<size_t>(s + j)];
      y[r][j] = tokens_[static_cast<size_t>(s + j + 1)];
      m[r][j] = 1;
    }
  }
  return b;
}

DatasetPair load_token_shards(const std::string& dir, int64_t context, int64_t eot) {
  namespace fs = std::filesystem;
  std::vector<std::string> train, val;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || e.path().extension() != ".bin") continue;
    if (name.find("train") != std::string::npos) train.push_back(e.path().string());
    else if (name.find("val") != std::string::npos) val.push_back(e.path().string());
  }
  VDP_CHECK(!train.empty(), "invalid value for --data-dir: '", dir, "' has no *train*.bin token shard (make them "
            "with launch/make_shards.py, or point --data-dir at llm.c's shards)");
  std::sort(train.begin(), train.end());
  std::sort(val.begin(), val.end());
  auto read_all = [](const std::vector<std::string>& files) {
    std::vector<uint16_t> all;
    for (const auto& f : files) {
      auto t = read_token_shard(f);
      all.insert(all.end(), t.begin(), t.end());
    }
    return all;
  };
  const std::vector<uint16_t> train_tokens = read_all(train);
  VDP_CHECK(!train_tokens.empty(), "the *train*.bin token shards in '", dir, "' hold no tokens (headers only); make "
            "them again with launch/make_shards.py");
  if (eot < 0) eot = *std::max_element(train_tokens.begin(), train_tokens.end()) > 256 ? 50256 : 256;
  DatasetPair p;
  auto tr = std::make_shared<TokenDataset>(train_tokens, eot, context);
  VDP_CHECK(tr->size() > 0, "the token shards in '", dir, "' hold no document of two or more tokens");
  p.train = tr;
  if (!val.empty()) {
    auto v = std::make_shared<TokenDataset>(read_all(val), eot, context);
    if (v->size() > 0) p.test = v;
  }
  return p;
}

}  // namespace vdp
