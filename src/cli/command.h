// Subcommand registry. Each cli/cmd_<name>.cpp defines its Schema and run function and registers them:
//
//   static hs::cli::Registrar reg{{"tokenize", "encode or decode text with a HF tokenizer", schema_fn,
//                                  run_fn, /*needs_mpi=*/false}};
//
// main.cpp owns the shared start-up: --help/--version, MPI start-up for commands that need it (rank and
// world set in hs::log), config parsing, and the top-level error handler (message with rank, then
// MPI_Abort on a multi-rank run so a job never hangs on one failed rank). A command listed in main.cpp's
// canonical order but not registered is reported as not implemented yet (exit 2).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "config/config.h"

namespace hs::cli {

struct Command {
  std::string name;
  std::string summary;
  std::function<config::Schema()> schema;
  std::function<int(const config::Config&)> run;  // returns the process exit code
  bool needs_mpi = false;                          // MPI_Init before run (prep, train, eval)
};

const std::vector<Command>& commands();
const Command* find_command(const std::string& name);

struct Registrar {
  explicit Registrar(Command command);
};

}  // namespace hs::cli
