// vdp-bench's parts (src/apps/bench/): the driver (main.cpp), one file per section, shared helpers.
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "vdp/config/config.h"

#ifndef VDP_SOURCE_DIR
#define VDP_SOURCE_DIR "."
#endif
#ifndef VDP_PYTHON_DEFAULT
#define VDP_PYTHON_DEFAULT ""
#endif

namespace vdp::bench {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t);
// vdp-train's options parsed as a Config (quiet, no evaluation).
vdp::Config make_config(std::vector<std::string> args);
// The Fashion-MNIST CNN task every timing section uses.
std::vector<std::string> cnn_args(int64_t global_batch, int64_t micro_batch, int64_t steps);
std::string self_exe();
// Runs a command and parses the last line of its output as JSON.
json run_child(const std::string& cmd);
std::string mpirun_prefix(int np);

// Sections (each returns its figures; print.cpp prints them).
json section_overhead(int64_t steps);           // overhead.cpp
json child_memory(const std::string& mode, int64_t k, int64_t m);  // memory.cpp
json section_memory(const std::string& exe);
json section_memory_fit(int64_t steps);         // memory_fit.cpp: recomputation, --micro-batch auto
json child_dist(int64_t steps);                 // dist.cpp (under mpirun)
json child_shard(int64_t steps);                // shard.cpp (under mpirun): --shard-optimizer vs replicated
json section_ddp(const std::string& python, int64_t steps);  // scripts.cpp: the PyTorch references
json section_gpt(const std::string& python, int64_t steps);
json section_gpu(const std::string& python);
json section_gpt_gpu(const std::string& python);
void print_tables(const json& r);               // print.cpp

}  // namespace vdp::bench
