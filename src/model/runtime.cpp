// Device and dtype choice; see runtime.h.
#include "model/runtime.h"

#include <ATen/detail/CUDAHooksInterface.h>

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

}  // namespace hs::model
