// Metrics: a JSON-lines file written by rank 0 (one record per optimizer step with "event": "step",
// one per evaluation with "event": "eval", a last one with "event": "final"), and a progress line
// on the terminal.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

namespace vdp {

class MetricsWriter {
 public:
  // Opens `path`, truncated; an empty path writes nothing. Creates missing parent folders.
  // `resume_step` >= 0: a run resumed at that step continues the existing file instead, keeping
  // only what the run wrote up to the checkpoint (step records of earlier steps, start and eval
  // records up to it), so after any number of resumes each step appears exactly once. IoError if
  // it cannot be created or rewritten.
  explicit MetricsWriter(const std::string& path, int64_t resume_step = -1);
  ~MetricsWriter();
  // Appends one record as one line with one write(2); a failed or short write (disk full) is
  // undone (the file is cut back to the last whole record) and throws IoError.
  void write(const nlohmann::json& record);
  bool enabled() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
  int64_t size_ = 0;  // bytes of whole records in the file
  bool regular_ = false;  // a regular file (not a device or FIFO): checked for removal after each record
  std::string path_;
};

// The records of a metrics file a run resumed at `resume_step` keeps (see MetricsWriter).
bool keep_on_resume(const nlohmann::json& record, int64_t resume_step);

// "epoch 1/3  step 120/938  loss 0.4123  5012 samples/s  ETA 1m20s", redrawn in place on a
// terminal at most a few times a second; silent when stderr is not a terminal.
class ProgressLine {
 public:
  explicit ProgressLine(bool enabled);
  void update(int64_t epoch, int64_t epochs, int64_t step, int64_t steps, double loss, double samples_per_s,
              double eta_s);
  void clear();  // ends the line before other output

 private:
  bool enabled_ = false;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

std::string format_duration(double seconds);

}  // namespace vdp
