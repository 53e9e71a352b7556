// The subcommand registry: a function-local static list that Registrar objects in each cmd_*.cpp append to
// at start-up (no central table to edit when a command is added); see command.h.
#include "cli/command.h"

namespace hs::cli {
namespace {
std::vector<Command>& registry() {
  static std::vector<Command> r;
  return r;
}
}  // namespace

const std::vector<Command>& commands() { return registry(); }

const Command* find_command(const std::string& name) {
  for (const auto& c : registry())
    if (c.name == name) return &c;
  return nullptr;
}

Registrar::Registrar(Command command) { registry().push_back(std::move(command)); }

}  // namespace hs::cli
