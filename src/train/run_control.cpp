// Run control (see run_control.h). The signal handlers are async-signal-safe: they set atomics and write a
// fixed buffer with write(2); the trainer polls stop_requested() at each step boundary and agrees on it
// across ranks.
#include "train/run_control.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>

#include "core/log.h"

namespace hs::train {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<int> g_interrupts{0};
std::atomic<int64_t> g_step{0};  // the optimizer step being run (1-based); 0 before training
int g_print_rank = 0;            // the signal handler writes only on rank 0

void say(const char* a, int64_t n, const char* b);

// SIGTERM/SIGUSR1 (Slurm's preemption notice, or mpirun passing on a Ctrl-C as SIGTERM): stop at the next
// step boundary, checkpoint, exit 75.
void on_signal(int) {
  if (g_stop.exchange(true)) return;
  const int64_t step = g_step.load();
  if (step > 0) say("\nstop requested (SIGTERM/SIGUSR1): finishing step ", step, " and saving\n");
}

// Async-signal-safe: write(2) of a fixed buffer, no allocation, no locks.
void say(const char* a, int64_t n, const char* b) {
  char buf[256];
  size_t len = 0;
  auto add = [&](const char* s) {
    while (*s && len + 1 < sizeof buf) buf[len++] = *s++;
  };
  add(a);
  if (n >= 0) {
    char digits[24];
    int k = 0;
    do digits[k++] = char('0' + n % 10);
    while ((n /= 10) > 0 && k < 23);
    while (k > 0 && len + 1 < sizeof buf) buf[len++] = digits[--k];
  }
  add(b);
  if (g_print_rank == 0) (void)!::write(STDERR_FILENO, buf, len);
}

// SIGINT (Ctrl-C): the first one asks for a stop like SIGTERM (finish the step, checkpoint, exit 75); the
// second one ends the process at once, by SIGINT, without saving.
void on_interrupt(int) {
  if (g_interrupts.fetch_add(1) > 0) {
    say("\nsecond interrupt: aborting without saving", -1, "\n");
    ::signal(SIGINT, SIG_DFL);
    ::raise(SIGINT);
    return;
  }
  g_stop.store(true);
  const int64_t step = g_step.load();
  if (step > 0)
    say("\ninterrupted: finishing step ", step, " and saving; press Ctrl-C again to abort without saving\n");
  else
    say("\ninterrupted: stopping before the first step and saving; press Ctrl-C again to abort without "
        "saving",
        -1, "\n");
}

}  // namespace

void install_stop_handlers() {
  g_print_rank = log::rank();
  struct sigaction sa {};
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);
  sa.sa_handler = on_interrupt;
  sigaction(SIGINT, &sa, nullptr);
}
bool stop_requested() { return g_stop.load(); }

void note_step(int64_t step) { g_step.store(step); }

bool FaultInjection::at(int64_t step, const char* kind) const {
  const char* v = std::getenv("HSLOTH_FAIL_AT");
  if (!v || !*v) return false;
  const std::string spec = v;
  const size_t a = spec.find(':'), b = a == std::string::npos ? a : spec.find(':', a + 1);
  const std::string what = b == std::string::npos ? "" : spec.substr(b + 1);
  int64_t r = -1, k = -1;
  try {
    size_t used = 0;
    r = std::stoll(spec.substr(0, a), &used);
    const std::string ks = spec.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
    k = std::stoll(ks, &used);
    if (used != ks.size()) k = -2;
  } catch (const std::exception&) {
    k = -2;
  }
  if (a == std::string::npos || k == -2 || (what != "" && what != "data" && what != "nan" && what != "eval"))
    throw Error(hs::str("HSLOTH_FAIL_AT='", spec, "' is not RANK:STEP or RANK:STEP:data|nan|eval"))
        .hint("e.g. HSLOTH_FAIL_AT=1:3");
  return r == rank_ && k == step + 1 && what == kind;
}

void FaultInjection::fail_if_planned(int64_t step) const {
  if (at(step, ""))
    throw Error(hs::str("injected failure at step ", step + 1,
                        " (HSLOTH_FAIL_AT=", std::getenv("HSLOTH_FAIL_AT"), ")"));
}

std::string pack_error(const Error& e) { return e.message() + '\x1f' + e.where() + '\x1f' + e.hint_text(); }
Error unpack_error(const std::string& s) {
  size_t a = s.find('\x1f'), b = a == std::string::npos ? a : s.find('\x1f', a + 1);
  if (b == std::string::npos) return Error(s);
  Error e(s.substr(0, a));
  if (b > a + 1) e.at(s.substr(a + 1, b - a - 1));
  if (b + 1 < s.size()) e.hint(s.substr(b + 1));
  return e;
}

}  // namespace hs::train
