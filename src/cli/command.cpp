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
