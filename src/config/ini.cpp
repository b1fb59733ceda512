#include "ini.h"

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "vdp/core/error.h"

namespace vdp {
namespace {

constexpr uintmax_t kMaxIniBytes = 4u << 20;

std::string trim(const std::string& s) {
  const char* ws = " \t\r";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

bool valid_name(const std::string& s) {
  if (s.empty()) return false;
  for (char ch : s)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.')) return false;
  return true;
}

}  // namespace

std::vector<IniEntry> parse_ini(const std::string& text, const std::string& name) {
  std::vector<IniEntry> out;
  std::set<std::string> seen;
  // Text only: UTF-16 (a byte-order mark, or NUL bytes between ASCII letters) and binary files would
  // otherwise cut the message at their first NUL; a UTF-8 byte-order mark is skipped.
  const auto u8 = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  VDP_CHECK(!(text.size() >= 2 && ((u8(0) == 0xFF && u8(1) == 0xFE) || (u8(0) == 0xFE && u8(1) == 0xFF))), name,
            ": the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8 or ASCII text");
  const size_t nul = text.find('\0');
  if (nul != std::string::npos) {
    const long line_of_nul = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(nul), '\n');
    VDP_FAIL(name, ":", line_of_nul, ": a NUL byte (byte ", nul,
             " of the file): configuration files are UTF-8 or ASCII text (UTF-16 without a byte-order mark, or "
             "not a configuration file at all?)");
  }
  std::istringstream in(text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? text.substr(3) : text);
  std::string raw, section;
  int lineno = 0;
  while (std::getline(in, raw)) {
    ++lineno;
    std::string line = trim(raw);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[') {
      VDP_CHECK(line.back() == ']' && valid_name(trim(line.substr(1, line.size() - 2))), name, ":", lineno,
                ": malformed section header '", line, "' (write [section])");
      section = trim(line.substr(1, line.size() - 2));
      continue;
    }
    size_t eq = line.find('=');
    VDP_CHECK(eq != std::string::npos, name, ":", lineno, ": malformed line '", line,
              "' (write 'key = value', '[section]' or a '#' comment)");
    IniEntry e;
    e.section = section;
    e.key = trim(line.substr(0, eq));
    e.value = trim(line.substr(eq + 1));
    e.line = lineno;
    VDP_CHECK(valid_name(e.key), name, ":", lineno, ": malformed key in '", line,
              "' (keys are option names such as global-batch)");
    size_t dot = e.key.rfind('.');
    if (dot != std::string::npos) {
      VDP_CHECK(section.empty(), name, ":", lineno, ": dotted key '", e.key, "' inside [", section,
                "] (write it at the top of the file, or drop the section prefix)");
      e.section = e.key.substr(0, dot);
      e.key = e.key.substr(dot + 1);
    }
    VDP_CHECK(seen.insert(e.key).second, name, ":", lineno, ": option '", e.key,
              "' is set twice in this file (keep one)");
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<IniEntry> read_ini(const std::string& path) {
  // A folder, a FIFO or a device (/dev/zero) would block or never end: only regular files of a
  // sane size are read.
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  VDP_CHECK(std::filesystem::exists(st), "invalid value for --config: '", path, "' does not exist (give the path of an INI file)");
  VDP_CHECK(std::filesystem::is_regular_file(st), "invalid value for --config: '", path,
            "' is not a regular file (give the path of an INI file)");
  const auto size = std::filesystem::file_size(path, ec);
  VDP_CHECK(!ec && size <= kMaxIniBytes, "invalid value for --config: '", path, "' is ", size,
            " bytes; configuration files are at most ", kMaxIniBytes, " bytes (is it the right file?)");
  std::ifstream f(path, std::ios::binary);
  VDP_CHECK(f.good(), "invalid value for --config: cannot read '", path, "' (give the path of an INI file)");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_ini(ss.str(), path);
}

}  // namespace vdp
