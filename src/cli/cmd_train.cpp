// `hsloth train`: the config contract of DESIGN.md (src/config/schemas.cpp) handed to the Trainer, with the
// communicator for this world size and the SIGTERM/SIGUSR1 handlers (stop at the next step boundary,
// checkpoint, exit 75). `mpirun -np N hsloth train ...` runs N ranks.
#include "cli/command.h"
#include "config/schemas.h"
#include "dist/communicator.h"
#include "train/trainer.h"

namespace {

int run(const hs::config::Config& cfg) {
  hs::train::install_stop_handlers();
  auto comm = hs::dist::make_communicator(hs::dist::rank_device());
  hs::train::Trainer trainer(cfg, *comm);
  return trainer.run();
}

hs::cli::Registrar reg{
    {"train", "fine-tune on shards", [] { return hs::config::train_schema(); }, run, true}};

}  // namespace
