// Schemas shared by several subcommands. The training keys are the contract in DESIGN.md (users and
// scripts rely on these names): `hsloth train --help` prints them with their defaults.
#pragma once

#include "config/config.h"

namespace hs::config {

// Every key of `hsloth train` (model, data, run, finetune, lora, train, eval, ckpt, log sections).
const Schema& train_schema();

}  // namespace hs::config
