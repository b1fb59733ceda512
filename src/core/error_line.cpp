#include "vdp/core/error_line.h"

#include <c10/util/Exception.h>

namespace vdp {

std::string error_line(const std::exception& e) {
  const auto* c10 = dynamic_cast<const c10::Error*>(&e);
  const std::string text = c10 ? c10->what_without_backtrace() : e.what();
  std::string line = text.substr(0, text.find('\n'));
  if (line.find("TorchScript interpreter") != std::string::npos) {
    const size_t end = text.find_last_not_of(" \n");
    const size_t nl = end == std::string::npos ? std::string::npos : text.rfind('\n', end);
    const size_t start = nl == std::string::npos ? 0 : nl + 1;
    if (end != std::string::npos && end >= start) line = text.substr(start, end - start + 1);
  }
  return line;
}

}  // namespace vdp
