// The one line an exception is reported by: the first line of its text (LibTorch's without the C++
// backtrace), or, for an error raised inside a TorchScript module (whose first line only says "The
// following operation failed in the TorchScript interpreter"), the module's own exception: the last
// non-empty line ("RuntimeError: ..."). Used by every report (run/run.h) and by the start-up probe.
#pragma once

#include <exception>
#include <string>

namespace vdp {

std::string error_line(const std::exception& e);

}  // namespace vdp
