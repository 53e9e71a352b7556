// What steers a training run from outside its options: stop signals (SIGTERM, SIGUSR1 or a first Ctrl-C ask
// for a stop at the next step boundary; a second Ctrl-C aborts, unsaved), injected faults (HSLOTH_FAIL_AT,
// for tests and cluster drills), and errors carried between ranks as bytes (with their where and hint).
#pragma once

#include <cstdint>
#include <string>

#include "core/error.h"

namespace hs::train {

// Installs the SIGTERM/SIGUSR1/SIGINT handlers that request a stop at the next step boundary (a second
// SIGINT aborts). Call after MPI start-up: only rank 0 prints the interrupt notice.
void install_stop_handlers();
bool stop_requested();
// The optimizer step being run (1-based; 0 before training), for the handlers' notice.
void note_step(int64_t step);

// HSLOTH_FAIL_AT=RANK:STEP makes that rank throw at the start of that (1-based) step, as a crash would: a way
// to check that a job whose rank fails ends promptly on your cluster (tests use it under mpirun).
// RANK:STEP:data throws inside the step as an unreadable sample does, RANK:STEP:eval in the eval after step
// STEP, RANK:STEP:nan makes that rank's loss NaN: they take the path that saves the last completed step.
class FaultInjection {
 public:
  explicit FaultInjection(int rank) : rank_(rank) {}
  // Whether a fault of `kind` ("" | "data" | "nan" | "eval") is planned for this rank in step `step`
  // (0-based).
  bool at(int64_t step, const char* kind) const;
  // Throws the plain injected failure when one is planned for `step`.
  void fail_if_planned(int64_t step) const;

 private:
  int rank_;
};

// An hs::Error as bytes and back, so that rank 0 can report another rank's error with its where and hint.
std::string pack_error(const Error& e);
Error unpack_error(const std::string& s);

}  // namespace hs::train
