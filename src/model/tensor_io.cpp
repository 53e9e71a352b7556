// safetensors <-> ATen; see tensor_io.h.
#include "model/tensor_io.h"

#include "core/error.h"

namespace hs::model {

at::ScalarType to_scalar_type(io::DType d) {
  switch (d) {
    case io::DType::F64:
      return at::kDouble;
    case io::DType::I64:
      return at::kLong;
    case io::DType::F32:
      return at::kFloat;
    case io::DType::I32:
      return at::kInt;
    case io::DType::BF16:
      return at::kBFloat16;
    case io::DType::F16:
      return at::kHalf;
    case io::DType::I16:
      return at::kShort;
    case io::DType::I8:
      return at::kChar;
    case io::DType::U8:
      return at::kByte;
    case io::DType::BOOL:
      return at::kBool;
  }
  throw Error("unknown dtype");
}

io::DType to_io_dtype(at::ScalarType t) {
  switch (t) {
    case at::kDouble:
      return io::DType::F64;
    case at::kLong:
      return io::DType::I64;
    case at::kFloat:
      return io::DType::F32;
    case at::kInt:
      return io::DType::I32;
    case at::kBFloat16:
      return io::DType::BF16;
    case at::kHalf:
      return io::DType::F16;
    case at::kShort:
      return io::DType::I16;
    case at::kChar:
      return io::DType::I8;
    case at::kByte:
      return io::DType::U8;
    case at::kBool:
      return io::DType::BOOL;
    default:
      throw Error(str("tensor type ", c10::toString(t), " cannot be stored in safetensors"));
  }
}

at::ScalarType parse_scalar_type(const std::string& n) {
  if (n == "float32" || n == "fp32" || n == "float") return at::kFloat;
  if (n == "bfloat16" || n == "bf16") return at::kBFloat16;
  if (n == "float16" || n == "fp16" || n == "half") return at::kHalf;
  if (n == "float64" || n == "fp64" || n == "double") return at::kDouble;  // reference runs in tests
  throw Error(str("unknown dtype '", n, "'")).hint("use float32 (fp32), bfloat16 (bf16) or float16 (fp16)");
}

const char* scalar_type_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return "float32";
    case at::kBFloat16:
      return "bfloat16";
    case at::kHalf:
      return "float16";
    case at::kDouble:
      return "float64";
    default:
      return c10::toString(t);
  }
}

at::Tensor view_tensor(const io::TensorInfo& info) {
  auto opts = at::TensorOptions().dtype(to_scalar_type(info.dtype)).device(at::kCPU);
  if (info.numel() == 0) return at::empty(info.shape, opts);
  // The mapping is read-only; the view is only ever read (load_tensor copies it).
  return at::from_blob(const_cast<uint8_t*>(info.data), info.shape, opts);
}

at::Tensor load_tensor(const io::TensorInfo& info, at::ScalarType dtype, at::Device device) {
  at::Tensor v = view_tensor(info);
  if (dtype == at::ScalarType::Undefined) dtype = v.scalar_type();
  // copy=true: the result never aliases the mapping, whatever the dtype/device.
  return v.to(device, dtype, /*non_blocking=*/false, /*copy=*/true);
}

HostTensor to_host(const std::string& name, const at::Tensor& t, at::ScalarType dtype) {
  HostTensor h;
  at::Tensor c = t.detach();
  if (dtype != at::ScalarType::Undefined && c.scalar_type() != dtype) c = c.to(dtype);
  c = c.to(at::kCPU).contiguous();
  h.spec = {name, to_io_dtype(c.scalar_type()), std::vector<int64_t>(c.sizes().begin(), c.sizes().end())};
  h.tensor = c;
  return h;
}

}  // namespace hs::model
