// A strict INI reader for vdp's config files: 'key = value' lines, '[section]' headers, '#' or ';'
// comments and blank lines. Anything else is a malformed line and an error naming file:line.
#pragma once

#include <string>
#include <vector>

namespace vdp {

struct IniEntry {
  std::string section;  // "" before the first [section]
  std::string key;      // "section.key" at top level is split into section and key
  std::string value;
  int line = 0;         // 1-based, for messages
};

std::vector<IniEntry> read_ini(const std::string& path);
std::vector<IniEntry> parse_ini(const std::string& text, const std::string& name);

}  // namespace vdp
