// Config parsing on Boost.ProgramOptions. Every schema key becomes a po option holding a string; we
// validate types ourselves so that errors can name the key, where it came from (FILE:LINE or "command
// line") and the closest valid key or choice. Precedence: command line > --config file > default.
#include "config/config.h"

#include <boost/program_options.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace po = boost::program_options;

namespace hs::config {
namespace {

const char* type_name(Type t) {
  switch (t) {
    case Type::string:
      return "string";
    case Type::path:
      return "path";
    case Type::integer:
      return "integer";
    case Type::real:
      return "number";
    case Type::boolean:
      return "bool";
    case Type::choice:
      return "choice";
    case Type::list:
      return "list";
  }
  return "?";
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
      // Adjacent transposition counts as one edit ("lorr.r" vs "lora.r" style typos).
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        cur[j] = std::min(cur[j], prev[j - 1]);
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::vector<std::string> split_list(const std::string& v) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : v) {
    if (c == ',' || std::isspace(static_cast<unsigned char>(c))) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

std::string choice_hint(const std::string& value, const std::vector<std::string>& choices) {
  std::string near = closest(value, choices);
  std::string h = near.empty() ? "" : "did you mean '" + near + "'? ";
  return h + "valid values: " + join(choices, ", ");
}

// Finds the line of `key` (dotted) in INI text, for error messages. 0 if not found.
int find_ini_line(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string line, section;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    std::string t = trim(line);
    if (t.empty() || t[0] == '#' || t[0] == ';') continue;
    if (t.front() == '[' && t.back() == ']') {
      section = trim(t.substr(1, t.size() - 2));
      continue;
    }
    auto eq = t.find('=');
    if (eq == std::string::npos) continue;
    std::string k = trim(t.substr(0, eq));
    std::string full = section.empty() ? k : section + "." + k;
    if (full == key) return n;
  }
  return 0;
}

std::string ini_origin(const std::string& file, const std::string& text, const std::string& key) {
  int line = find_ini_line(text, key);
  return line > 0 ? file + ":" + std::to_string(line) : file;
}

// Sanity checks po's INI parser doesn't do: lines that are neither comments, sections nor key = value.
void check_ini_syntax(const std::string& text, const std::string& file) {
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    std::string t = trim(line);
    if (t.empty() || t[0] == '#' || t[0] == ';') continue;
    if (t.front() == '[') {
      if (t.back() != ']' || t.size() < 3)
        throw Error("malformed section header '" + t + "'")
            .at(file + ":" + std::to_string(n))
            .hint("sections look like [lora]");
      continue;
    }
    if (t.find('=') == std::string::npos || trim(t.substr(0, t.find('='))).empty())
      throw Error("expected 'key = value', got '" + t + "'")
          .at(file + ":" + std::to_string(n))
          .hint("INI lines are `key = value` under a [section] header; comments start with # or ;");
  }
}

}  // namespace

std::string closest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = SIZE_MAX;
  std::string w = lower(word);
  for (const auto& c : candidates) {
    std::string lc = lower(c);
    size_t d = edit_distance(w, lc);
    // A key whose last component matches exactly is a strong hint (`--r` -> `lora.r`).
    auto dot = lc.rfind('.');
    if (dot != std::string::npos && lc.substr(dot + 1) == w) d = 1;
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  size_t limit = std::max<size_t>(2, w.size() / 3);
  return best_d <= limit ? best : std::string();
}

std::string absolute_path(const std::string& value, const std::string& base) {
  if (value.empty() || value == "-") return value;
  namespace fs = std::filesystem;
  fs::path p(value);
  if (p.is_relative()) p = fs::absolute(base.empty() ? fs::path(".") : fs::path(base)) / p;
  return p.lexically_normal().string();
}

std::string validate(const Key& key, const std::string& raw, const std::string& origin) {
  std::string v = trim(raw);
  auto fail = [&](const std::string& what, const std::string& hint) -> Error {
    return std::move(Error("bad value '" + v + "' for '" + key.name + "': " + what).at(origin).hint(hint));
  };
  switch (key.type) {
    case Type::string:
    case Type::path:
      return raw;  // exact: `--text "  hi "` keeps its spaces (INI values arrive trimmed by the parser)
    case Type::integer: {
      errno = 0;
      char* end = nullptr;
      long long x = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || errno == ERANGE)
        throw fail("not an integer", "e.g. " + key.name + " = 16");
      if (double(x) < key.min || double(x) > key.max)
        throw fail("out of range", hs::str("allowed: ", key.min, " to ", key.max));
      return std::to_string(x);
    }
    case Type::real: {
      errno = 0;
      char* end = nullptr;
      double x = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(x))
        throw fail("not a number", "e.g. " + key.name + " = 2e-4");
      if (x < key.min || x > key.max)
        throw fail("out of range", hs::str("allowed: ", key.min, " to ", key.max));
      return v;
    }
    case Type::boolean: {
      std::string l = lower(v);
      if (l == "true" || l == "1" || l == "yes" || l == "on") return "true";
      if (l == "false" || l == "0" || l == "no" || l == "off") return "false";
      throw fail("not a boolean", "use true or false");
    }
    case Type::choice: {
      if (std::find(key.choices.begin(), key.choices.end(), v) == key.choices.end())
        throw fail("not a valid choice", choice_hint(v, key.choices));
      return v;
    }
    case Type::list: {
      auto items = split_list(v);
      if (!key.choices.empty())
        for (const auto& it : items)
          if (std::find(key.choices.begin(), key.choices.end(), it) == key.choices.end())
            throw fail("'" + it + "' is not a valid item", choice_hint(it, key.choices));
      return join(items, " ");
    }
  }
  return v;
}

// ---- Schema ----------------------------------------------------------------------------------------

Schema::Schema(std::string command, std::string usage, std::string description)
    : command_(std::move(command)), usage_(std::move(usage)), description_(std::move(description)) {}

Schema& Schema::add(Key key) {
  HS_CHECK(find(key.name) == nullptr, "duplicate key ", key.name);
  if (!key.default_value.empty() && key.type != Type::string && key.type != Type::path)
    key.default_value = validate(key, key.default_value, "default of " + command_);
  keys_.push_back(std::move(key));
  return *this;
}
Schema& Schema::str(std::string name, std::string def, std::string help, bool required) {
  return add({.name = std::move(name),
              .type = Type::string,
              .default_value = std::move(def),
              .help = std::move(help),
              .required = required});
}
Schema& Schema::path(std::string name, std::string def, std::string help, bool required) {
  return add({.name = std::move(name),
              .type = Type::path,
              .default_value = std::move(def),
              .help = std::move(help),
              .required = required});
}
Schema& Schema::input_path(std::string name, std::string def, std::string help, bool required) {
  return add({.name = std::move(name),
              .type = Type::path,
              .default_value = std::move(def),
              .help = std::move(help),
              .required = required,
              .must_exist = true});
}
Schema& Schema::integer(std::string name, int64_t def, std::string help, double min, double max) {
  return add({.name = std::move(name),
              .type = Type::integer,
              .default_value = std::to_string(def),
              .help = std::move(help),
              .min = min,
              .max = max});
}
Schema& Schema::real(std::string name, double def, std::string help, double min, double max) {
  std::ostringstream os;
  os << def;
  return add({.name = std::move(name),
              .type = Type::real,
              .default_value = os.str(),
              .help = std::move(help),
              .min = min,
              .max = max});
}
Schema& Schema::flag(std::string name, std::string help) {
  return boolean(std::move(name), false, std::move(help));
}
Schema& Schema::boolean(std::string name, bool def, std::string help) {
  return add({.name = std::move(name),
              .type = Type::boolean,
              .default_value = def ? "true" : "false",
              .help = std::move(help)});
}
Schema& Schema::choice(std::string name, std::string def, std::vector<std::string> choices,
                       std::string help) {
  return add({.name = std::move(name),
              .type = Type::choice,
              .default_value = std::move(def),
              .help = std::move(help),
              .choices = std::move(choices)});
}
Schema& Schema::list(std::string name, std::string def, std::string help, std::vector<std::string> choices) {
  return add({.name = std::move(name),
              .type = Type::list,
              .default_value = std::move(def),
              .help = std::move(help),
              .choices = std::move(choices)});
}
Schema& Schema::positional(std::string name) {
  HS_CHECK(find(name) != nullptr, "positional '", name, "' must be a key of the schema");
  positionals_.push_back(std::move(name));
  return *this;
}
Schema& Schema::config_file(bool allowed) {
  config_file_ = allowed;
  return *this;
}

const Key* Schema::find(const std::string& name) const {
  for (const auto& k : keys_)
    if (k.name == name) return &k;
  return nullptr;
}

std::string Schema::help() const {
  std::ostringstream os;
  os << "usage: hsloth " << command_ << " " << usage_ << "\n";
  if (!description_.empty()) os << "\n" << description_ << "\n";
  if (config_file_)
    os << "\nOptions come from --config FILE (INI: a key `r` under `[lora]` is `lora.r`) and from flags\n"
          "(--lora.r 32 or --lora.r=32), which override the file. Booleans: --flag alone means true.\n";
  std::string section = "\x01";
  auto key_line = [&](const Key& k) {
    std::string name = "--" + k.name;
    if (std::find(positionals_.begin(), positionals_.end(), k.name) != positionals_.end())
      name = k.name + " (positional) | " + name;
    os << "  " << name;
    std::string meta = std::string(" <") + type_name(k.type) + ">";
    if (k.type == Type::boolean) meta = "";
    os << meta << "\n      " << k.help;
    if (k.type == Type::choice || (k.type == Type::list && !k.choices.empty()))
      os << "\n      one of: " << join(k.choices, ", ");
    if (k.required)
      os << "\n      required";
    else if (!k.default_value.empty())
      os << "\n      default: " << k.default_value;
    os << "\n";
  };
  std::vector<const Key*> sorted;
  for (const auto& k : keys_) sorted.push_back(&k);
  // Section-less keys first, then by section in the order sections first appear.
  std::vector<std::string> order{""};
  for (const auto& k : keys_) {
    auto dot = k.name.find('.');
    std::string s = dot == std::string::npos ? "" : k.name.substr(0, dot);
    if (std::find(order.begin(), order.end(), s) == order.end()) order.push_back(s);
  }
  for (const auto& s : order) {
    bool header = false;
    for (const auto* k : sorted) {
      auto dot = k->name.find('.');
      std::string ks = dot == std::string::npos ? "" : k->name.substr(0, dot);
      if (ks != s) continue;
      if (!header) {
        os << "\n" << (s.empty() ? std::string("options") : "[" + s + "]") << ":\n";
        header = true;
      }
      key_line(*k);
    }
  }
  if (config_file_) os << "\n  --config <path>\n      INI file with any of the keys above\n";
  return os.str();
}

// ---- Config ----------------------------------------------------------------------------------------

namespace {
const Key& key_or_throw(const Schema& schema, const std::string& key) {
  const Key* k = schema.find(key);
  if (!k) {
    std::vector<std::string> names;
    for (const auto& kk : schema.keys()) names.push_back(kk.name);
    std::string near = closest(key, names);
    throw Error("internal: no config key '" + key + "' in schema '" + schema.command() + "'")
        .hint(near.empty() ? "" : "closest: " + near);
  }
  return *k;
}
}  // namespace

bool Config::has(const std::string& key) const {
  auto it = values_.find(key);
  return it != values_.end() && !it->second.value.empty();
}
bool Config::given(const std::string& key) const {
  auto it = values_.find(key);
  return it != values_.end() && it->second.given;
}
std::string Config::get(const std::string& key) const {
  key_or_throw(*schema_, key);
  auto it = values_.find(key);
  return it == values_.end() ? std::string() : it->second.value;
}
int64_t Config::get_int(const std::string& key) const {
  const Key& k = key_or_throw(*schema_, key);
  HS_CHECK(k.type == Type::integer, "key ", key, " is not an integer");
  std::string v = get(key);
  if (v.empty())
    throw Error("missing value for '" + key + "'").hint("set --" + key + " or " + key + " in the INI");
  return std::stoll(v);
}
double Config::get_real(const std::string& key) const {
  const Key& k = key_or_throw(*schema_, key);
  HS_CHECK(k.type == Type::real || k.type == Type::integer, "key ", key, " is not a number");
  std::string v = get(key);
  if (v.empty())
    throw Error("missing value for '" + key + "'").hint("set --" + key + " or " + key + " in the INI");
  return std::stod(v);
}
bool Config::get_bool(const std::string& key) const {
  const Key& k = key_or_throw(*schema_, key);
  HS_CHECK(k.type == Type::boolean, "key ", key, " is not a boolean");
  return get(key) == "true";
}
std::vector<std::string> Config::get_list(const std::string& key) const { return split_list(get(key)); }
std::string Config::origin(const std::string& key) const {
  auto it = values_.find(key);
  return it == values_.end() ? "default" : it->second.origin;
}
void Config::set(const std::string& key, std::string value, std::string origin) {
  const Key& k = key_or_throw(*schema_, key);
  values_[key] = Entry{validate(k, value, origin), origin, true};
}

std::string Config::to_ini() const {
  std::ostringstream os;
  os << "# Resolved configuration of `hsloth " << schema_->command() << "` (defaults filled in).\n"
     << "# Re-run with: hsloth " << schema_->command() << " --config config.resolved.ini\n";
  std::string current = "\x01";
  // Section-less keys first (in schema order), then sections in the order of first appearance.
  std::vector<std::string> order{""};
  for (const auto& k : schema_->keys()) {
    auto dot = k.name.find('.');
    std::string s = dot == std::string::npos ? "" : k.name.substr(0, dot);
    if (std::find(order.begin(), order.end(), s) == order.end()) order.push_back(s);
  }
  for (const auto& s : order) {
    bool header = false;
    for (const auto& k : schema_->keys()) {
      auto dot = k.name.find('.');
      std::string ks = dot == std::string::npos ? "" : k.name.substr(0, dot);
      if (ks != s) continue;
      auto it = values_.find(k.name);
      if (it == values_.end() || it->second.value.empty()) continue;
      if (!header && !s.empty()) {
        os << "\n[" << s << "]\n";
        header = true;
      }
      os << (dot == std::string::npos ? k.name : k.name.substr(dot + 1)) << " = " << it->second.value << "\n";
    }
  }
  return os.str();
}

// ---- parsing ---------------------------------------------------------------------------------------

namespace {

po::options_description make_description(const Schema& schema) {
  po::options_description desc;
  for (const auto& k : schema.keys()) {
    if (k.type == Type::boolean)
      desc.add_options()(k.name.c_str(), po::value<std::string>()->implicit_value("true"), k.help.c_str());
    else if (k.type == Type::list)
      desc.add_options()(k.name.c_str(), po::value<std::vector<std::string>>()->multitoken()->composing(),
                         k.help.c_str());
    else
      desc.add_options()(k.name.c_str(), po::value<std::string>(), k.help.c_str());
  }
  return desc;
}

std::vector<std::string> key_names(const Schema& schema) {
  std::vector<std::string> names;
  for (const auto& k : schema.keys()) names.push_back(k.name);
  return names;
}

std::string unknown_hint(const Schema& schema, const std::string& key) {
  std::string near = closest(key, key_names(schema));
  std::string h = near.empty() ? "" : "did you mean '" + near + "'? ";
  return h + "`hsloth " + schema.command() + " --help` lists every key";
}

std::string value_of(const po::variable_value& v) {
  if (v.value().type() == typeid(std::vector<std::string>))
    return join(v.as<std::vector<std::string>>(), " ");
  return v.as<std::string>();
}

void fill_defaults(const Schema& schema, std::map<std::string, Config::Entry>& values) {
  for (const auto& k : schema.keys())
    if (!values.count(k.name))
      values[k.name] = Config::Entry{k.type == Type::path ? absolute_path(k.default_value) : k.default_value,
                                     "default", false};
}

// Input paths that name nothing: an error naming the key, where it was set and what it resolved to.
void check_paths_exist(const Schema& schema, const std::map<std::string, Config::Entry>& values) {
  for (const auto& k : schema.keys()) {
    auto it = values.find(k.name);
    if (!k.must_exist || it == values.end() || it->second.value.empty() || it->second.value == "-") continue;
    std::error_code ec;
    if (std::filesystem::exists(it->second.value, ec)) continue;
    const bool from_file = it->second.origin != "command line" && it->second.origin != "default";
    throw Error("'" + k.name + "': " + it->second.value + " not found (no such file or folder)")
        .at(it->second.origin)
        .hint(from_file ? "a relative path in a config file is relative to the file's folder; fix the line "
                          "or give an absolute path"
                        : "a relative path on the command line is relative to the working directory");
  }
}

void check_required(const Schema& schema, const std::map<std::string, Config::Entry>& values) {
  for (const auto& k : schema.keys()) {
    auto it = values.find(k.name);
    if (k.required && (it == values.end() || it->second.value.empty())) {
      bool pos = std::find(schema.positionals().begin(), schema.positionals().end(), k.name) !=
                 schema.positionals().end();
      throw Error("missing required option '" + k.name + "'")
          .hint(pos ? "pass it as an argument: hsloth " + schema.command() + " <" + k.name + ">"
                    : "pass --" + k.name + " <" + type_name(k.type) + ">" +
                          (schema.accepts_config_file() ? " or set it in the --config file" : ""));
    }
  }
}

// Boost's INI parser knows only '#' comments: blank out ';' comments (whole lines, and inline ones after
// whitespace) keeping the line count, so that FILE:LINE in errors stays right.
std::string strip_semicolon_comments(const std::string& text) {
  std::istringstream in(text);
  std::string line, out;
  while (std::getline(in, line)) {
    std::string t = trim(line);
    if (!t.empty() && t[0] == ';') {
      line.clear();
    } else {
      for (size_t i = 1; i < line.size(); ++i)
        if (line[i] == ';' && std::isspace(static_cast<unsigned char>(line[i - 1]))) {
          line.resize(i);
          break;
        }
    }
    out += line + "\n";
  }
  return out;
}

// Reads INI text into `values` (keys not already set by the command line).
void apply_ini(const Schema& schema, const std::string& raw_text, const std::string& file,
               std::map<std::string, Config::Entry>& values) {
  check_ini_syntax(raw_text, file);
  const std::string text = strip_semicolon_comments(raw_text);
  po::options_description desc = make_description(schema);
  std::istringstream in(text);
  po::parsed_options parsed(&desc);
  try {
    parsed = po::parse_config_file(in, desc, /*allow_unregistered=*/true);
  } catch (const po::error& e) {
    throw Error(std::string("cannot parse INI: ") + e.what()).at(file);
  }
  std::map<std::string, std::string> seen;
  for (const auto& opt : parsed.options) {
    std::string origin = ini_origin(file, text, opt.string_key);
    if (opt.unregistered)
      throw Error("unknown key '" + opt.string_key + "'")
          .at(origin)
          .hint(unknown_hint(schema, opt.string_key));
    const Key* k = schema.find(opt.string_key);
    std::string raw = join(opt.value, " ");
    if (seen.count(opt.string_key) && k->type != Type::list)
      throw Error("key '" + opt.string_key + "' is set twice").at(origin).hint("keep one of the two lines");
    seen[opt.string_key] = raw;
    if (values.count(opt.string_key) && values[opt.string_key].origin == "command line") continue;
    std::string v = validate(*k, raw, origin);
    if (k->type == Type::path) v = absolute_path(v, std::filesystem::path(file).parent_path().string());
    if (k->type == Type::list && values.count(opt.string_key) && values[opt.string_key].given)
      v = values[opt.string_key].value + " " + v;
    values[opt.string_key] = Config::Entry{v, origin, true};
  }
}

std::string read_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open config file").at(path).hint("check the path given to --config");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Config parse(const Schema& schema, const std::vector<std::string>& args) {
  Config cfg;
  cfg.schema_ = &schema;
  po::options_description desc = make_description(schema);
  if (schema.accepts_config_file()) desc.add_options()("config", po::value<std::string>(), "INI file");
  po::options_description hidden;
  hidden.add_options()("__positional", po::value<std::vector<std::string>>(), "");
  po::options_description all;
  all.add(desc).add(hidden);
  po::positional_options_description pos;
  pos.add("__positional", -1);

  po::parsed_options parsed(&all);
  try {
    parsed = po::command_line_parser(args)
                 .options(all)
                 .positional(pos)
                 .allow_unregistered()
                 .style(po::command_line_style::unix_style ^ po::command_line_style::allow_guessing)
                 .run();
  } catch (const po::invalid_command_line_syntax& e) {
    std::string opt = e.get_option_name();
    while (!opt.empty() && opt[0] == '-') opt.erase(0, 1);
    throw Error(std::string(e.what())).at("command line").hint("give a value: --" + opt + " <value>");
  } catch (const po::error& e) {
    throw Error(std::string(e.what()))
        .at("command line")
        .hint("`hsloth " + schema.command() + " --help` lists the options");
  }

  std::string config_file;
  std::vector<std::string> positionals;
  for (const auto& opt : parsed.options) {
    if (opt.unregistered) {
      std::string name = opt.string_key;
      if (name.empty() && !opt.original_tokens.empty()) name = opt.original_tokens[0];
      while (!name.empty() && name[0] == '-') name.erase(0, 1);
      throw Error("unknown option '--" + name + "'").at("command line").hint(unknown_hint(schema, name));
    }
    if (opt.string_key == "__positional") {
      for (const auto& v : opt.value) positionals.push_back(v);
      continue;
    }
    if (opt.string_key == "config") {
      config_file = opt.value.empty() ? "" : opt.value[0];
      continue;
    }
    const Key* k = schema.find(opt.string_key);
    std::string raw = opt.value.empty() ? "true" : join(opt.value, " ");
    std::string v = validate(*k, raw, "command line (--" + k->name + ")");
    if (k->type == Type::path) v = absolute_path(v);
    auto& e = cfg.values_[k->name];
    if (k->type == Type::list && e.given) v = e.value + " " + v;
    e = Config::Entry{v, "command line", true};
  }
  if (positionals.size() > schema.positionals().size()) {
    std::string extra = positionals[schema.positionals().size()];
    throw Error("unexpected argument '" + extra + "'")
        .at("command line")
        .hint(schema.positionals().empty()
                  ? "this command takes only --key value options; see --help"
                  : "this command takes " + std::to_string(schema.positionals().size()) +
                        " argument(s); see --help");
  }
  for (size_t i = 0; i < positionals.size(); ++i) {
    const Key* k = schema.find(schema.positionals()[i]);
    if (cfg.values_.count(k->name))
      throw Error("'" + k->name + "' given twice (as argument and as --" + k->name + ")").at("command line");
    std::string v = validate(*k, positionals[i], "command line");
    if (k->type == Type::path) v = absolute_path(v);
    cfg.values_[k->name] = Config::Entry{v, "command line", true};
  }
  if (!config_file.empty()) apply_ini(schema, read_config_file(config_file), config_file, cfg.values_);
  fill_defaults(schema, cfg.values_);
  check_required(schema, cfg.values_);
  check_paths_exist(schema, cfg.values_);
  return cfg;
}

Config parse_ini_text(const Schema& schema, const std::string& text, const std::string& file_name) {
  Config cfg;
  cfg.schema_ = &schema;
  apply_ini(schema, text, file_name, cfg.values_);
  fill_defaults(schema, cfg.values_);
  check_required(schema, cfg.values_);
  return cfg;
}

}  // namespace hs::config
