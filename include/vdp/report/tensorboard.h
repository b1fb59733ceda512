// TensorBoard event files written directly (no TensorFlow, no protobuf library): TFRecord framing
// (length, masked CRC-32C of the length, data, masked CRC-32C of the data) around Event messages
// encoded by hand: wall_time (1, double), step (2, int64), file_version (3, string) and
// summary (5) { value (1) { tag (1, string), simple_value (2, float) } }.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace vdp {

class TensorBoardWriter {
 public:
  // Creates `dir` if needed and a new events.out.tfevents.<time>.<host>.<pid> file in it.
  // UserError if it cannot.
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  void add_scalar(const std::string& tag, int64_t step, double value);
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);
  void check_not_removed() const;
  std::FILE* file_ = nullptr;
  std::string path_;
};

// CRC-32C (Castagnoli), as TFRecord uses.
uint32_t crc32c(const void* data, size_t size);

}  // namespace vdp
