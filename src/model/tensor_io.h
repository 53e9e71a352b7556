// Conversions between safetensors (hs::io, torch-free) and ATen: dtype mapping, a mapped tensor turned
// into an owned at::Tensor of the run dtype/device (one tensor at a time, never a second full copy of the
// checkpoint), and an at::Tensor's bytes handed to a writer.
#pragma once

#include <string>

#include <ATen/ATen.h>

#include "io/safetensors.h"

namespace hs::model {

at::ScalarType to_scalar_type(io::DType dtype);
io::DType to_io_dtype(at::ScalarType type);  // throws for types safetensors cannot hold
// Parses "float32"/"fp32"/"bfloat16"/"bf16"/"float16"/"fp16" (and "float64" for reference runs);
// throws naming the value otherwise.
at::ScalarType parse_scalar_type(const std::string& name);
const char* scalar_type_name(at::ScalarType type);  // "float32", "bfloat16", ... (HF's torch_dtype names)

// An owned copy of a mapped tensor, converted to `dtype` (kUndefined = keep) on `device`.
at::Tensor load_tensor(const io::TensorInfo& info, at::ScalarType dtype, at::Device device);
// A view of a mapped tensor (no copy; valid while the checkpoint lives; never write to it).
at::Tensor view_tensor(const io::TensorInfo& info);

// A contiguous CPU tensor kept alive next to its safetensors description (for writers).
struct HostTensor {
  io::TensorSpec spec;
  at::Tensor tensor;  // contiguous, on CPU
  io::TensorRef ref() const { return {spec, tensor.data_ptr(), spec.nbytes()}; }
};
HostTensor to_host(const std::string& name, const at::Tensor& t,
                   at::ScalarType dtype = at::ScalarType::Undefined);

}  // namespace hs::model
