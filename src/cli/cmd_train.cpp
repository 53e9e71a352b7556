// `hsloth train`: the config contract of DESIGN.md (src/config/schemas.cpp), turned into TrainOptions
// (train/options.h: read and validated once) and handed to the Trainer, with the
// communicator for this world size and the stop handlers (SIGTERM/SIGUSR1/first Ctrl-C: stop at the next step
// boundary, checkpoint, exit 75; a second Ctrl-C aborts). `mpirun -np N hsloth train ...` runs N ranks;
// before the communicator is made, the ranks check that they agree on config, model, tokenizer and shards, and
// the plan's estimate (cli/plan_run.h) stops a run whose predicted peak exceeds the GPU's free memory.
#include <algorithm>
#include <utility>

#include "cli/command.h"
#include "cli/plan_run.h"
#include "config/schemas.h"
#include "dist/communicator.h"
#include "dist/mpi_runtime.h"
#include "train/agreement.h"
#include "train/options.h"
#include "train/trainer.h"

namespace {

int run(const hs::config::Config& cfg) {
  hs::train::TrainOptions options = hs::train::from_config(cfg);
  hs::train::install_stop_handlers();
  const auto device = hs::dist::rank_device();
  hs::train::check_startup_agreement(cfg, options, device.is_cuda() ? "cuda" : "cpu");
  // `hsloth plan`'s estimate before any weight loads: stop with its advice when the run cannot fit.
  if (cfg.get("train.plan_check") == "on")
    hs::cli::check_run_fits(options, device.is_cuda(), device.is_cuda() ? int(device.index()) : 0,
                            std::max(1, hs::dist::Mpi::world()));
  auto comm = hs::dist::make_communicator(device);
  hs::train::Trainer trainer(std::move(options), *comm);
  return trainer.run();
}

hs::cli::Registrar reg{
    {"train", "fine-tune on shards", [] { return hs::config::train_schema(); }, run, true}};

}  // namespace
