// The opt-in profile of one optimizer step (profile.h). Kineto is prepared one step ahead when it can be (its
// warm-up: CUPTI's start-up cost lands in step N-1, not in the recorded step), the device is synchronized
// before recording starts and before it stops so the trace holds exactly step N's work, a user annotation
// "hsloth_step_N" spans the step's host time, and input shapes are recorded so that the kernels of each GEMM
// can be told apart by shape (bench/profile_summary.py splits LoRA GEMMs from base GEMMs that way).
#include "train/profile.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <utility>

#include <ATen/DeviceAccelerator.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include "core/error.h"
#include "core/log.h"
#include "io/file.h"

namespace hs::train {
namespace {

namespace prof = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

ProfilerConfig config() {
  return ProfilerConfig(ProfilerState::KINETO, /*report_input_shapes=*/true, /*profile_memory=*/false,
                        /*with_stack=*/false, /*with_flops=*/false, /*with_modules=*/false);
}

std::unique_ptr<at::RecordFunction> annotate(const std::string& name) {
  auto rf = std::make_unique<at::RecordFunction>(at::RecordScope::USER_SCOPE);
  if (rf->isActive()) rf->before(name);
  return rf;
}

std::set<ActivityType> activities(const c10::Device& device) {
  std::set<ActivityType> a{ActivityType::CPU};
  if (device.is_cuda()) a.insert(ActivityType::CUDA);
  return a;
}

}  // namespace

int64_t StepProfiler::parse(const char* v) {
  if (!v || !*v) return 0;
  const std::string s = v;
  size_t used = 0;
  int64_t n = 0;
  try {
    n = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || n < 1)
    throw Error(hs::str("HSLOTH_PROFILE_STEP='", s, "' is not a step number (1, 2, ...)"))
        .hint("e.g. HSLOTH_PROFILE_STEP=5 records step 5; unset it to train without profiling");
  return n;
}

StepProfiler::StepProfiler(int rank, std::string run_dir, c10::Device device, int64_t start_step,
                           int64_t total_steps)
    : run_dir_(std::move(run_dir)), device_(device) {
  const int64_t n = parse(std::getenv("HSLOTH_PROFILE_STEP"));
  if (n == 0 || rank != 0) return;
  if (n <= start_step || n > total_steps) {
    log::warn("HSLOTH_PROFILE_STEP=", n, " is outside the steps this run trains (", start_step + 1, "..",
              total_steps, "): no profile is recorded");
    return;
  }
  target_ = n;
}

StepProfiler::~StepProfiler() {
  if (!recording_) return;
  phase_.reset();
  annotation_.reset();
  try {
    prof::disableProfiler();  // the step did not finish (an error or a stop): drop the trace
  } catch (...) {
  }
}

void StepProfiler::sync() const {
  if (device_.is_cuda())
    at::accelerator::synchronizeDevice(device_.has_index() ? device_.index()
                                                           : at::accelerator::getDeviceIndex());
}

void StepProfiler::begin_slow(int64_t step) {
  const int64_t n = step + 1;
  if (n != target_ - 1 && n != target_) return;
  // A profiler that cannot start (a LibTorch without Kineto, one already running) is reported, never the end
  // of the run.
  try {
    if (!prepared_) prof::prepareProfiler(config(), activities(device_));
    prepared_ = true;
    if (n == target_ - 1) return;  // warm-up: Kineto (and CUPTI) start; the trace window opens next step
    sync();
    prof::enableProfiler(config(), activities(device_));
    recording_ = true;
    annotation_ = annotate(hs::str("hsloth_step_", n));
  } catch (const std::exception& e) {
    log::warn("HSLOTH_PROFILE_STEP=", target_, ": the profiler did not start (", e.what(), "); no profile");
    target_ = 0;
  }
}

void StepProfiler::phase_slow(const char* name) {
  phase_.reset();
  phase_ = annotate(hs::str("hsloth_", name));
}

void StepProfiler::end_slow(int64_t step) {
  if (step + 1 != target_ || !recording_) return;
  phase_.reset();  // closes the annotations before the profiler stops
  annotation_.reset();
  sync();
  recording_ = false;
  // A profile that cannot be written is reported, never the end of the run.
  std::unique_ptr<prof::ProfilerResult> result;
  const std::string dir = (std::filesystem::path(run_dir_) / "profile").string();
  const std::string path = (std::filesystem::path(dir) / hs::str("step_", target_, ".trace.json")).string();
  const std::string tmp = path + ".tmp";
  std::string failed;
  try {
    result = prof::disableProfiler();
    io::make_dirs(dir);
    result->save(tmp);
    if (!io::exists(tmp))
      failed = "Kineto wrote no file";
    else if (std::rename(tmp.c_str(), path.c_str()) != 0)
      failed = std::strerror(errno);
  } catch (const std::exception& e) {
    failed = e.what();
  }
  if (!failed.empty()) {
    log::warn("the profile of step ", target_, " was not written (", path, "): ", failed,
              "; check that run.dir is writable and has space");
    return;
  }
  log::info("profile of step ", target_, " (", result->events().size(), " events",
            device_.is_cuda() ? "" : ", CPU only", ") -> ", path, "; summarize: bench/profile_summary.py ",
            path);
}

}  // namespace hs::train
