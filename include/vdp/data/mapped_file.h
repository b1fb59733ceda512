// A data file mapped read-only for the whole run, guarded against changes under the running job.
//
// A memory map reads the file's pages as they are now: a file truncated under it makes the next read
// of a page past the new end fault with SIGBUS, and a file rewritten in place changes the samples
// silently. MappedFile turns both into one line naming the file and exit 3 (vdp::IoError):
//  - copy_rows() reads under a SIGBUS guard: a fault there becomes an IoError on that thread, which
//    ends the job through the usual failure path (every rank, one line);
//  - a fault in a mapping outside copy_rows() (the start-up checks read the maps through ATen) ends
//    the process with the same line and exit 3 from the signal handler;
//  - after each copy the file's size and modification time are compared with those at mapping, so a
//    rewrite in place (numpy.save over the file, cp onto it) is found at the next batch.
// A file replaced by rename (a new inode) is no change: the map keeps the old file's pages.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace vdp {

class MappedFile {
 public:
  // Maps `path` (a regular file of at least one byte); UserError if it cannot be opened or is no file.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const unsigned char* data() const { return static_cast<const unsigned char*>(map_); }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // dst[k] = the `row_bytes` bytes at offset + ids[k] * row_bytes, for k < n; IoError naming the file
  // if it was truncated or rewritten under the job.
  void copy_rows(void* dst, size_t offset, const int64_t* ids, size_t n, size_t row_bytes) const;
  // IoError naming the file if its size or modification time differ from those at mapping.
  void check_unchanged() const;

 private:
  MappedFile() = default;
  std::string changed_message(const char* how) const;

  std::string path_;
  int fd_ = -1;
  void* map_ = nullptr;
  size_t size_ = 0;
  int64_t mtime_ns_ = 0;
  int slot_ = -1;  // this map's entry in the SIGBUS handler's table
};

}  // namespace vdp
