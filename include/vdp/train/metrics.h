// Metrics: a JSON-lines file written by rank 0 (one record per optimizer step with "event": "step",
// one per evaluation with "event": "eval", a last one with "event": "final"), and a progress line
// on the terminal.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

namespace vdp {

class MetricsWriter {
 public:
  // Opens `path` (truncated, or appended to when resuming); an empty path writes nothing.
  // Creates missing parent folders. UserError if it cannot be created.
  explicit MetricsWriter(const std::string& path, bool append = false);
  ~MetricsWriter();
  void write(const nlohmann::json& record);
  bool enabled() const { return file_ != nullptr; }

 private:
  std::FILE* file_ = nullptr;
  std::string path_;
};

// "epoch 1/3  step 120/938  loss 0.4123  5012 samples/s  ETA 1m20s", redrawn in place on a
// terminal at most a few times a second; silent when stderr is not a terminal.
class ProgressLine {
 public:
  explicit ProgressLine(bool enabled);
  void update(int64_t epoch, int64_t epochs, int64_t step, int64_t steps, double loss, double samples_per_s,
              double eta_s);
  void clear();  // ends the line before other output

 private:
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

std::string format_duration(double seconds);

}  // namespace vdp
