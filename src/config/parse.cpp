// The command line and INI parser, derived from the option table (options.cpp) with
// Boost.Program_options: one Boost option per row, bound to its Config field; choice options travel
// as text and are mapped after parsing, so messages list the allowed values.
#include <boost/program_options.hpp>

#include <map>
#include <sstream>

#include "ini.h"
#include "option_rows.h"
#include "validate.h"
#include "vdp/core/error.h"

namespace po = boost::program_options;

namespace vdp {
namespace {

// The sections of --help and of the INI file, in order.
const std::vector<std::pair<const char*, const char*>> kSections{
    {"run", "Run"},
    {"data", "Data"},
    {"model", "Model"},
    {"batch", "Batch and accumulation (counts are samples)"},
    {"optim", "Optimizer"},
    {"schedule", "Learning-rate schedule (stepped per optimizer step)"},
    {"amp", "Mixed precision"},
    {"dist", "Devices and ranks"},
    {"output", "Output"},
};

struct Declared {
  std::map<std::string, po::options_description> sections;
  std::map<std::string, std::string> choice_text;  // choice options' text while Boost parses
  bool help = false;
};

// One Boost option per row, bound to its field.
void declare(Declared& d, Config& c) {
  for (const auto& [key, title] : kSections) d.sections.emplace(key, po::options_description(title));
  for (const options::Row& r : options::rows()) {
    const OptionInfo& o = r.info;
    const po::value_semantic* v = std::visit(
        [&](const auto& f) -> const po::value_semantic* {
          using F = std::decay_t<decltype(f)>;
          if constexpr (std::is_same_v<F, options::ChoiceField>) {
            return po::value<std::string>(&d.choice_text[o.name])->default_value(o.default_text);
          } else if constexpr (std::is_same_v<F, bool Config::*>) {
            if (!f) return po::bool_switch(&d.help);  // --help
            return po::value<bool>(&(c.*f))->default_value(o.default_text == "true")->implicit_value(true);
          } else if constexpr (std::is_same_v<F, std::string Config::*>) {
            if (o.traits & kAction) return po::value<std::string>(&(c.*f));  // --config: no default
            return po::value<std::string>(&(c.*f))->default_value(o.default_text);
          } else if constexpr (std::is_same_v<F, double Config::*>) {
            // Shown as written (0.9, not 0.90000000000000002).
            return po::value<double>(&(c.*f))->default_value(std::stod(o.default_text), o.default_text);
          } else if constexpr (std::is_same_v<F, uint64_t Config::*>) {
            return po::value<uint64_t>(&(c.*f))->default_value(std::stoull(o.default_text));
          } else {
            return po::value<int64_t>(&(c.*f))->default_value(std::stoll(o.default_text));
          }
        },
        r.field);
    // "a|b|c" is one word to Boost's line wrapping, which then cuts it anywhere: spaced out, the help
    // wraps between the values.
    std::string help;
    for (char ch : o.help) help += ch == '|' ? std::string(" | ") : std::string(1, ch);
    d.sections.at(o.section).add_options()(o.name.c_str(), v, help.c_str());
  }
}

po::options_description all_options(const Declared& d) {
  po::options_description all("vdp-train options");
  for (const auto& [key, title] : kSections) all.add(d.sections.at(key));
  return all;
}

std::string help_text(const Declared& d, const std::string& prog) {
  std::ostringstream os;
  os << "usage: " << prog << " [FILE.ini | --config FILE.ini] [options]\n"
     << "       mpirun -np W " << prog << " ...   (W ranks; each accumulates K micro-batches per step)\n\n"
        "Every option can also be set in the INI file, as 'name = value' at the top or in the\n"
        "[section] named below in brackets; the command line wins over the file.\n";
  for (const auto& [key, title] : kSections) os << "\n[" << key << "] " << d.sections.at(key);
  return os.str();
}

// Turns Boost's exceptions into one line that says what to do.
[[noreturn]] void rethrow_boost(const po::error& e, const std::string& where, const std::string& prog) {
  std::string msg = e.what();
  if (dynamic_cast<const po::too_many_positional_options_error*>(&e))
    VDP_FAIL(where, "more than one argument without an option name (the only one allowed is the INI file, as in ",
             prog, " FILE.ini; options start with --)");
  if (dynamic_cast<const po::unknown_option*>(&e)) VDP_FAIL(where, msg, " (run ", prog, " --help for the list of options)");
  if (dynamic_cast<const po::invalid_option_value*>(&e) || dynamic_cast<const po::invalid_bool_value*>(&e))
    VDP_FAIL(where, msg, " (see ", prog, " --help for the expected type)");
  VDP_FAIL(where, msg, " (see ", prog, " --help)");
}

// A setting's row, or nullptr for unknown names and actions (which INI files and defaults cannot set).
const options::Row* setting(const std::string& name) {
  const options::Row* r = options::find(name);
  return r && !(r->info.traits & kAction) ? r : nullptr;
}

// (name, value) pairs stored as if they had come from the command line, under what is stored already.
void store_pairs(const std::vector<std::pair<std::string, std::string>>& pairs, const po::options_description& all,
                 po::variables_map& vm, const std::string& where, const std::string& prog) {
  po::parsed_options parsed(&all);
  for (const auto& [key, value] : pairs) {
    po::option o(key, {value});
    o.original_tokens = {key, value};
    parsed.options.push_back(o);
  }
  try {
    po::store(parsed, vm);
  } catch (const po::error& e) {
    rethrow_boost(e, where, prog);
  }
}

}  // namespace

ParseResult parse_config(int argc, const char* const* argv, const ParseSettings& settings) {
  const std::string& prog = settings.program;
  ParseResult out;
  Config& c = out.config;
  Declared d;
  declare(d, c);
  po::options_description all = all_options(d);

  po::variables_map vm;
  try {
    // The command line is stored first: po::store never overwrites, so it wins over the file.
    // Exact option names only (no prefix guessing: --epoch is not --epochs); one positional
    // argument, the INI file (vdp-train FILE.ini means --config FILE.ini).
    po::positional_options_description positional;
    positional.add("config", 1);
    const int style = po::command_line_style::unix_style & ~po::command_line_style::allow_guessing;
    po::store(po::command_line_parser(argc, argv).options(all).positional(positional).style(style).run(), vm);
  } catch (const po::error& e) {
    rethrow_boost(e, "command line: ", prog);
  }
  if (vm.count("help") && vm["help"].as<bool>()) {
    out.exit_now = true;
    out.text = help_text(d, prog);
    return out;
  }
  if (vm.count("config")) {
    const std::string file = vm["config"].as<std::string>();
    std::vector<std::pair<std::string, std::string>> pairs;
    for (const IniEntry& e : read_ini(file)) {
      const options::Row* r = setting(e.key);
      VDP_CHECK(r, file, ":", e.line, ": unknown option '", e.key, "' (run ", prog, " --help for the list of options)");
      VDP_CHECK(e.section.empty() || e.section == r->info.section, file, ":", e.line, ": option '", e.key,
                "' belongs in section [", r->info.section, "], not [", e.section, "]");
      pairs.emplace_back(e.key, e.value);
    }
    store_pairs(pairs, all, vm, file + ": ", prog);
  }
  // The program's own defaults (vdp::run's RunSpec::defaults) come last: under the command line and
  // the file, over the built-in defaults.
  for (const auto& [key, value] : settings.defaults)
    VDP_CHECK(setting(key), prog, ": default for unknown option '", key,
              "' (the program's RunSpec::defaults name options without the leading --)");
  store_pairs(settings.defaults, all, vm, prog + " defaults: ", prog);
  try {
    po::notify(vm);
  } catch (const po::error& e) {
    rethrow_boost(e, "", prog);
  }
  for (const options::Row& r : options::rows())
    if (const auto* f = std::get_if<options::ChoiceField>(&r.field)) f->set(c, r.info.name, d.choice_text[r.info.name]);
  options::validate(c, settings.own_task);
  return out;
}

}  // namespace vdp
