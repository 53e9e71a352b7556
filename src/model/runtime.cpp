// Device and dtype choice; see runtime.h.
#include "model/runtime.h"

#include <sys/resource.h>

#include <ATen/detail/CUDAHooksInterface.h>
#if HS_HAVE_KERNELS
#include <c10/cuda/CUDACachingAllocator.h>

#include "kernels/device_info.h"
#endif

#include "core/error.h"
#include "model/tensor_io.h"

namespace hs::model {

int cuda_device_count() { return at::hasCUDA() ? int(at::detail::getCUDAHooks().deviceCount()) : 0; }

at::Device resolve_device(const std::string& name, int local_rank) {
  const int n = cuda_device_count();
  if (name == "cpu") return at::Device(at::kCPU);
  if (name == "auto")
    return n > 0 ? at::Device(at::kCUDA, c10::DeviceIndex(local_rank % n)) : at::Device(at::kCPU);
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
    if (n == 0)
      throw Error("no CUDA device is available").at("--device " + name).hint("use --device cpu (or auto)");
    if (name == "cuda") return at::Device(at::kCUDA, c10::DeviceIndex(local_rank % n));
    int index = -1;
    try {
      index = std::stoi(name.substr(5));
    } catch (const std::exception&) {
    }
    if (index < 0 || index >= n)
      throw Error(str("GPU index out of range (", n, " visible)")).at("--device " + name);
    return at::Device(at::kCUDA, c10::DeviceIndex(index));
  }
  throw Error(str("unknown device '", name, "'")).hint("use auto, cpu, cuda or cuda:N");
}

at::ScalarType resolve_dtype(const std::string& name, const at::Device& device) {
  if (name == "auto") return device.is_cuda() ? at::kBFloat16 : at::kFloat;
  try {
    return parse_scalar_type(name);
  } catch (const Error& e) {
    throw Error(e.message()).at("--dtype").hint("use auto, float32, bfloat16 or float16");
  }
}

std::string device_name(const at::Device& device) {
  if (!device.is_cuda()) return device.str();
#if HS_HAVE_KERNELS
  for (const auto& d : kernels::visible_devices())
    if (d.index == device.index()) return d.name;
#endif
  return "";
}

double peak_bf16_flops(int cc_major, int cc_minor, int multiprocessors, double clock_khz) {
  double per_sm_per_clock = 0;
  if (cc_major == 8) per_sm_per_clock = cc_minor == 0 ? 2048 : 1024;
  if (cc_major == 9 && cc_minor == 0) per_sm_per_clock = 4096;
  if (cc_major == 10) per_sm_per_clock = 8192;
  return per_sm_per_clock * double(multiprocessors) * clock_khz * 1e3;
}

double peak_bf16_flops(const at::Device& device) {
  if (!device.is_cuda()) return 0;
#if HS_HAVE_KERNELS
  for (const auto& d : kernels::visible_devices())
    if (d.index == device.index())
      return peak_bf16_flops(d.cc_major, d.cc_minor, d.multiprocessors, d.clock_khz);
#endif
  return 0;
}

double peak_memory_bytes(const at::Device& device) {
#if HS_HAVE_KERNELS
  if (device.is_cuda()) {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    return double(stats.allocated_bytes[size_t(c10::CachingAllocator::StatType::AGGREGATE)].peak);
  }
#endif
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) * 1024.0;
}

}  // namespace hs::model
