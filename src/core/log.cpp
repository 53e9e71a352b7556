// Rank-aware logging to stderr: one mutex so lines of threads never interleave, the level from HS_LOG read
// once, and the rank prefix only in multi-rank worlds; see log.h.
#include "core/log.h"

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

namespace hs::log {
namespace {
int g_rank = 0, g_world = 1;
bool g_all = false;
Level g_level = [] {
  const char* env = std::getenv("HS_LOG");
  if (!env) return Level::info;
  std::string v(env);
  if (v == "debug") return Level::debug;
  if (v == "warn") return Level::warn;
  if (v == "error") return Level::error;
  return Level::info;
}();
std::mutex g_mutex;
}  // namespace

void set_rank(int r, int w) {
  g_rank = r;
  g_world = w;
}
int rank() { return g_rank; }
int world() { return g_world; }
void set_level(Level l) { g_level = l; }
Level level() { return g_level; }
void set_all_ranks(bool on) { g_all = on; }

void write(Level l, std::string_view message) {
  if (l < Level::warn && g_rank != 0 && !g_all) return;
  static const char* names[] = {"debug", "info", "warning", "error"};
  std::lock_guard<std::mutex> lock(g_mutex);
  std::string line;
  if (g_world > 1) line += "[rank " + std::to_string(g_rank) + "] ";
  if (l != Level::info) line += std::string(names[static_cast<int>(l)]) + ": ";
  line += message;
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace hs::log
