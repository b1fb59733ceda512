// Ownership of a checkpoint folder (include/vdp/README.md, "Failures and stops"): one run at a time.
//
// Rank 0 holds an exclusive flock(2) on DIR/.vdp-lock for the whole run; the file names the
// holder (host and pid). The lock dies with the process (even on SIGKILL), so a crashed run never
// blocks the next. While holding it, leftovers of interrupted writers (.tmp-* folders, step-N
// folders without a manifest) are removed.
#pragma once

#include <functional>
#include <string>

namespace vdp {

class CheckpointDirLock {
 public:
  // Creates `dir` if missing and locks it. UserError naming the holder's host and pid when another
  // process holds it; IoError when the folder or lock file cannot be created.
  explicit CheckpointDirLock(const std::string& dir);
  ~CheckpointDirLock();
  CheckpointDirLock(const CheckpointDirLock&) = delete;
  CheckpointDirLock& operator=(const CheckpointDirLock&) = delete;
  // Gives the folder back as it was found: unlocks, and removes the lock file and the folder when
  // this lock created them (a run that failed on bad input writes nothing).
  void discard();
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  int fd_ = -1;
  bool created_dir_ = false;
  bool created_lock_ = false;
};

// Removes .tmp-* folders and step-N folders without a manifest under `dir` (call while holding the
// lock). Returns how many were removed.
int remove_stale_checkpoint_files(const std::string& dir);

// The newest checkpoint under `dir` that passes load_checkpoint()'s checks; newer ones that fail
// are skipped, each reported through `warn` with the reason. "" if none.
std::string newest_valid_checkpoint(const std::string& dir, const std::function<void(const std::string&)>& warn);

}  // namespace vdp
