// Host tensors of a micro-batch onto the device without a host sync (issue #12): to_device() stages a
// CPU tensor in pinned memory and copies it with non_blocking = true, so the host never waits for the GPU
// to drain before the next launch. HS_SYNC_INPUTS=1 restores the blocking copies (and the device-side
// checks that go with them in Model::hidden_states / loss_from_hidden) for A/B measurements.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace hs::model {

// Whether HS_SYNC_INPUTS=1 asks for the blocking input path (read on every call; tests switch it).
bool sync_inputs();

// `t` on `device`. A CPU tensor going to a CUDA device is copied through a pinned staging block from
// PyTorch's CachingHostAllocator with non_blocking = true: the copy is queued on the current stream and the
// block is not handed out again before that copy has run (the allocator records an event on the stream for
// it), so the caller may drop or change `t` at once. Tensors already on `device` come back as they are;
// every other case (and HS_SYNC_INPUTS=1) is t.to(device).
at::Tensor to_device(const at::Tensor& t, at::Device device);

}  // namespace hs::model
