// GPU facts from the CUDA runtime (no LibTorch headers): for `hsloth info` and for MFU/memory reporting.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hs::kernels {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0, multiprocessors = 0;
  int clock_khz = 0;  // peak SM clock (cudaDevAttrClockRate)
  int64_t total_memory = 0, free_memory = 0;
};

// Visible GPUs (empty when there is no driver or no device; never throws).
std::vector<DeviceInfo> visible_devices();
// "13.0" style versions; "" when unavailable.
std::string cuda_runtime_version();
std::string cuda_driver_version();

}  // namespace hs::kernels
