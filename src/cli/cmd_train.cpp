// `hsloth train`: the schema is the DESIGN.md config contract (src/config/schemas.cpp). The trainer itself
// lands with the training-engine issue; until then the command validates a config and says so.
#include "cli/command.h"
#include "config/schemas.h"

namespace {
hs::cli::Registrar reg{{"train", "fine-tune on shards", [] { return hs::config::train_schema(); }, nullptr, true}};
}  // namespace
