// Ranks agree or refuse (include/vdp/README.md, "Failures and stops"). Ranks started with different
// options or data would crash in a collective of mismatched size, hang, or silently train something
// else. At start every rank digests what must match: every option whose row has the kAgree trait
// (config/config.h; configs/README.md lists them), the data (sample counts and a digest of the
// first, middle and last samples of each split) and the model (parameter names, shapes, dtypes).
// Rank 0 broadcasts its digests, every rank compares, and one all-reduce tells every rank who
// differs where. Options that only one rank uses or that are per-rank by nature (outputs, how much
// is printed, the data folder) have no kAgree trait and are not compared.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "vdp/config/config.h"
#include "vdp/dist/communicator.h"
#include "vdp/task/task.h"

namespace vdp {

// A digest of a dataset's first, middle and last samples (rank agreement; a checkpoint records the
// training set's so a resume on other data is refused).
std::string data_digest(const Dataset& d);

// (name, value) pairs that must be equal on every rank, in a fixed order.
std::vector<std::pair<std::string, std::string>> agreement_items(const Config& cfg, const Task& task);

// Throws AgreedError on every rank when any rank differs, naming the first differing item, rank
// 0's value, the lowest differing rank and its value, and every differing rank.
void check_ranks_agree(const Config& cfg, const Task& task, Communicator& comm);

}  // namespace vdp
