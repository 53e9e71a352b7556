// See device_copy.h. The guarantee that makes the asynchronous copy safe is PyTorch's: copy_kernel_cuda calls
// the CUDA host allocator's record_event() for a pinned source when non_blocking is set, and the allocator's
// free() puts the block back into its free list only once those events have completed
// (ATen/core/CachingHostAllocator.h, ATen/cuda/CachingHostAllocator.h). A pageable source would instead be
// copied synchronously by the driver, which is why the tensor is staged with pin_memory() first.
#include "model/device_copy.h"

#include <cstdlib>
#include <cstring>

#include <ATen/ATen.h>

namespace hs::model {

bool sync_inputs() {
  const char* v = std::getenv("HS_SYNC_INPUTS");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

at::Tensor to_device(const at::Tensor& t, at::Device device) {
  if (!t.defined() || t.device() == device) return t;
  if (!t.is_cpu() || !device.is_cuda() || sync_inputs()) return t.to(device);
  at::Tensor host = t.is_pinned() && t.is_contiguous() ? t : t.contiguous().pin_memory();
  return host.to(device, /*non_blocking=*/true);
}

}  // namespace hs::model
