// The checks of a parsed Config (private to src/config): every row's range, then the rules between
// options, one function per section, then the output paths (nothing is created before they pass).
#pragma once

#include "vdp/config/config.h"

namespace vdp::options {

// Throws UserError with one line naming the option, the value and what is allowed.
void validate(Config& c, bool own_task);

}  // namespace vdp::options
