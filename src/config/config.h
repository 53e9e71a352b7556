// Configuration through Boost.ProgramOptions. A Schema lists every key a subcommand accepts (dotted
// names: the INI section `[lora]` with key `r` is `lora.r`), its type, default and help. parse() reads
// `--config FILE` (INI), then command-line flags (`--lora.r 32` or `--lora.r=32`), which override the file.
// Unknown keys and bad values are hs::Error naming the key (and the INI file:line) and suggesting the
// closest valid key or choice. Config::to_ini() is what a run folder saves as config.resolved.ini.
// Paths (Type::path) are stored absolute: a relative path on the command line is relative to the working
// directory, one in an INI file to that file's folder (so a config works from any directory, and the resolved
// config and the adapters it produces name paths that work from anywhere). A path key marked must_exist that
// names nothing is an error at parse time naming where it was set (FILE:LINE or the command line).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace hs::config {

enum class Type { string, path, integer, real, boolean, choice, list };

struct Key {
  std::string name;           // "lora.r", or "tokenizer" for a section-less subcommand flag
  Type type = Type::string;
  std::string default_value;  // "" with required=false means "unset" (Config::has() is false)
  std::string help;
  std::vector<std::string> choices;  // Type::choice (also validates each item of a Type::list if set)
  bool required = false;
  bool must_exist = false;  // Type::path: when set, it must name an existing file or folder
  double min = -1e300, max = 1e300;  // integer/real bounds, inclusive
};

class Schema {
 public:
  explicit Schema(std::string command, std::string usage = {}, std::string description = {});

  Schema& add(Key key);
  // Shorthands; they return *this so that a schema reads as a table.
  Schema& str(std::string name, std::string def, std::string help, bool required = false);
  Schema& path(std::string name, std::string def, std::string help, bool required = false);
  // A path that must exist when given (an input: model folder, shards, adapter).
  Schema& input_path(std::string name, std::string def, std::string help, bool required = false);
  Schema& integer(std::string name, int64_t def, std::string help, double min = -1e300, double max = 1e300);
  Schema& real(std::string name, double def, std::string help, double min = -1e300, double max = 1e300);
  Schema& flag(std::string name, std::string help);  // boolean, default false, `--name` sets it
  Schema& boolean(std::string name, bool def, std::string help);
  Schema& choice(std::string name, std::string def, std::vector<std::string> choices, std::string help);
  Schema& list(std::string name, std::string def, std::string help, std::vector<std::string> choices = {});
  // Positional arguments fill these keys in order (`hsloth inspect DIR` -> key "dir").
  Schema& positional(std::string name);
  // Whether `--config FILE` is accepted (true by default).
  Schema& config_file(bool allowed);

  const std::string& command() const { return command_; }
  const std::vector<Key>& keys() const { return keys_; }
  const std::vector<std::string>& positionals() const { return positionals_; }
  const Key* find(const std::string& name) const;
  bool accepts_config_file() const { return config_file_; }
  // `hsloth <cmd> --help`: usage, description, every key grouped by section with type, default, choices.
  std::string help() const;

 private:
  std::string command_, usage_, description_;
  std::vector<Key> keys_;
  std::vector<std::string> positionals_;
  bool config_file_ = true;
};

class Config {
 public:
  bool has(const std::string& key) const;  // has a value (given, or a non-empty default)
  bool given(const std::string& key) const;  // set in the file or on the command line
  std::string get(const std::string& key) const;  // throws hs::Error for keys not in the schema
  int64_t get_int(const std::string& key) const;
  double get_real(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::vector<std::string> get_list(const std::string& key) const;
  // Where the value came from: "default", "command line", or "FILE:LINE".
  std::string origin(const std::string& key) const;
  void set(const std::string& key, std::string value, std::string origin = "program");

  // INI text: section-less keys first, then one [section] per prefix; header comment names the command.
  std::string to_ini() const;
  const Schema& schema() const { return *schema_; }

  struct Entry {
    std::string value, origin;
    bool given = false;
  };

 private:
  friend Config parse(const Schema&, const std::vector<std::string>&);
  friend Config parse_ini_text(const Schema&, const std::string&, const std::string&);
  const Schema* schema_ = nullptr;
  std::map<std::string, Entry> values_;
};

// args excludes the program and subcommand names. Returns std::nullopt-free: throws hs::Error on bad
// input. `--help` is not handled here (the CLI checks for it first).
Config parse(const Schema& schema, const std::vector<std::string>& args);
// For tests and tools: parse INI text as if it came from `file_name`.
Config parse_ini_text(const Schema& schema, const std::string& text, const std::string& file_name);

// The closest candidate by edit distance, or "" if none is close enough to be a useful suggestion.
std::string closest(const std::string& word, const std::vector<std::string>& candidates);

// A path value made absolute: relative to `base` (a folder) or, when base is empty, to the working
// directory; "" and "-" (standard input) are kept as they are.
std::string absolute_path(const std::string& value, const std::string& base = {});

// Typed value checks shared by parse() and Config::set(): throws hs::Error naming key and origin.
std::string validate(const Key& key, const std::string& value, const std::string& origin);

}  // namespace hs::config
