// GPU facts straight from the CUDA runtime (count, name, compute capability, SMs, total and free memory,
// runtime and driver versions), free of LibTorch so `hsloth info` and the MFU/memory reports can ask it in
// any build. No device or no driver is an empty answer, never an exception (CUDA's error state is cleared).
#include "kernels/device_info.h"

#include <cuda_runtime.h>

namespace hs::kernels {
namespace {
std::string version_string(int v) {
  if (v <= 0) return "";
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}
}  // namespace

std::vector<DeviceInfo> visible_devices() {
  std::vector<DeviceInfo> out;
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return out;
  }
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    DeviceInfo d;
    d.index = i;
    d.name = p.name;
    d.cc_major = p.major;
    d.cc_minor = p.minor;
    d.multiprocessors = p.multiProcessorCount;
    d.total_memory = int64_t(p.totalGlobalMem);
    if (cudaDeviceGetAttribute(&d.clock_khz, cudaDevAttrClockRate, i) != cudaSuccess) d.clock_khz = 0;
    size_t free_b = 0, total_b = 0;
    int prev = 0;
    cudaGetDevice(&prev);
    if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) d.free_memory = int64_t(free_b);
    cudaSetDevice(prev);
    cudaGetLastError();
    out.push_back(d);
  }
  return out;
}

std::string cuda_runtime_version() {
  int v = 0;
  return cudaRuntimeGetVersion(&v) == cudaSuccess ? version_string(v) : "";
}

std::string cuda_driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) {
    cudaGetLastError();
    return "";
  }
  return version_string(v);
}

}  // namespace hs::kernels
