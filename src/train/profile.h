// HSLOTH_PROFILE_STEP=N (1-based step): rank 0 records optimizer step N with LibTorch's Kineto profiler (CPU
// ops with their input shapes, and on a GPU its kernels, copies and NCCL calls) and writes the Chrome trace
// to <run.dir>/profile/step_<N>.trace.json, for bench/profile_summary.py. Unset: nothing is done (one integer
// compare per step). Profiling never changes the numbers: it only observes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <c10/core/Device.h>

namespace at {
struct RecordFunction;
}

namespace hs::train {

// Reads HSLOTH_PROFILE_STEP (an hs::Error names a value that is not a positive integer). Every rank reads and
// checks it; only rank 0 records. Steps outside start_step+1..total_steps are a warning, not an error.
class StepProfiler {
 public:
  StepProfiler(int rank, std::string run_dir, c10::Device device, int64_t start_step, int64_t total_steps);
  ~StepProfiler();  // a step left recording by an error or a stop is dropped, unsaved
  StepProfiler(const StepProfiler&) = delete;
  StepProfiler& operator=(const StepProfiler&) = delete;

  // Call at the top of the step loop and after the parameters are updated; `step` is the loop's 0-based step.
  void begin(int64_t step) {
    if (target_ > 0) begin_slow(step);
  }
  void end(int64_t step) {
    if (target_ > 0) end_slow(step);
  }
  // Marks the rest of the recorded step, up to end() or the next phase, as annotation "hsloth_<name>" (the
  // summary counts every kernel launched in "hsloth_optimizer" as optimizer time). No-op when not recording.
  void phase(const char* name) {
    if (recording_) phase_slow(name);
  }

  // The step a run would profile under `env_value` (0 = none); throws for a value that is not a positive
  // integer. Exposed for tests.
  static int64_t parse(const char* env_value);

 private:
  void begin_slow(int64_t step);
  void end_slow(int64_t step);
  void phase_slow(const char* name);
  void sync() const;

  int64_t target_ = 0;  // 1-based step to record on this rank (0 = none)
  std::string run_dir_;
  c10::Device device_;
  bool prepared_ = false, recording_ = false;
  std::unique_ptr<at::RecordFunction> annotation_;  // "hsloth_step_N" around the step, in the trace
  std::unique_ptr<at::RecordFunction> phase_;       // "hsloth_<phase>" inside it
};

}  // namespace hs::train
