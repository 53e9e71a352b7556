// `hsloth train`: the config contract of DESIGN.md (src/config/schemas.cpp), turned into TrainOptions
// (train/options.h: read and validated once) and handed to the Trainer, with the
// communicator for this world size and the stop handlers (SIGTERM/SIGUSR1/first Ctrl-C: stop at the next step
// boundary, checkpoint, exit 75; a second Ctrl-C aborts). `mpirun -np N hsloth train ...` runs N ranks;
// before the communicator is made, the ranks check that they agree on config, model, tokenizer and shards.
#include <utility>

#include "cli/command.h"
#include "config/schemas.h"
#include "dist/communicator.h"
#include "train/agreement.h"
#include "train/options.h"
#include "train/trainer.h"

namespace {

int run(const hs::config::Config& cfg) {
  hs::train::TrainOptions options = hs::train::from_config(cfg);
  hs::train::install_stop_handlers();
  const auto device = hs::dist::rank_device();
  hs::train::check_startup_agreement(cfg, options, device.is_cuda() ? "cuda" : "cpu");
  auto comm = hs::dist::make_communicator(device);
  hs::train::Trainer trainer(std::move(options), *comm);
  return trainer.run();
}

hs::cli::Registrar reg{
    {"train", "fine-tune on shards", [] { return hs::config::train_schema(); }, run, true}};

}  // namespace
