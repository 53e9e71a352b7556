// Rank-aware logging. Every line goes to stderr with a level; `info` and `progress` print on rank 0
// only (unless all_ranks() is set), `warn` and `error` print on every rank, prefixed with the rank when
// the world has more than one. Set the rank once, right after MPI start-up, with hs::log::set_rank().
// Set HS_LOG=debug|info|warn|error to choose the level (default info).
#pragma once

#include <string>
#include <string_view>

#include "core/error.h"

namespace hs::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

void set_rank(int rank, int world);
int rank();
int world();
void set_level(Level level);
Level level();
// Print on every rank (used by tests and by per-rank diagnostics).
void set_all_ranks(bool on);

void write(Level level, std::string_view message);

template <typename... Args>
void debug(const Args&... args) {
  if (level() <= Level::debug) write(Level::debug, str(args...));
}
template <typename... Args>
void info(const Args&... args) {
  if (level() <= Level::info) write(Level::info, str(args...));
}
template <typename... Args>
void warn(const Args&... args) {
  if (level() <= Level::warn) write(Level::warn, str(args...));
}
template <typename... Args>
void error(const Args&... args) {
  write(Level::error, str(args...));
}

}  // namespace hs::log
