// The option table's rows as the parser and the checks see them (private to src/config). A row binds
// an option to its Config field; everything that lists options iterates the rows.
#pragma once

#include <functional>
#include <limits>
#include <string>
#include <variant>
#include <vector>

#include "vdp/config/config.h"

namespace vdp::options {

// A choice option's field, type-erased: its Config member is an enum.
struct ChoiceField {
  std::function<std::string(const Config&)> get;
  // Throws UserError "invalid value for --NAME: 'V' (allowed: a|b|c)".
  std::function<void(Config&, const std::string& name, const std::string& text)> set;
  std::vector<std::string> choices;
};

using Field = std::variant<bool Config::*, int64_t Config::*, uint64_t Config::*, double Config::*,
                           std::string Config::*, ChoiceField>;

// Allowed numbers: [lo, hi] with open ends where asked; `words` is what messages and the reference
// say ("" : any number of the type).
struct Range {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool lo_open = false, hi_open = false;
  const char* words = "";
  bool holds(double v) const { return (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi); }
};

struct Row {
  OptionInfo info;
  Field field;
  Range range;
};

const std::vector<Row>& rows();
const Row* find(const std::string& name);

}  // namespace vdp::options
