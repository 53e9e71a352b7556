// bitsandbytes' NF4 with double quantization, exactly (bitsandbytes 0.50.2; see issue 13): the weight's
// row-major flattened elements in blocks of 64 (blocks cross rows when in % 64 != 0), each block scaled by
// its absmax to the 16-value NF4 code book, two codes per byte (element 2i in the high nibble); the per-block
// absmax is itself quantized: offset = float32 mean of the raw absmax, (absmax - offset) in blocks of 256 to
// bitsandbytes' dynamic 8-bit code map, one float32 nested absmax per 256-block.
// Dequantization (bitsandbytes' pure-torch backend and CUDA kernel; two separate float32 roundings, no FMA):
//   a = nested_code[absmax[b]] * nested_absmax[b / 256];  a = a + offset;   (b = element / 64)
//   w = code[nibble] * a, rounded to `dtype`.
// Quantization: quantize_nf4_reference (and quantize_nf4 off CUDA) equals bitsandbytes' CPU quantizer bit for
// bit (its pure-torch 4-bit codes; its native 8-bit absmax codes, a 65536-entry table). quantize_nf4 on CUDA
// (CUDA builds) follows bitsandbytes' CUDA kernels instead (approximate reciprocal, NF4 decision tree, a
// 7-step binary search for the absmax codes), which differ from the CPU ones in a small fraction of absmax
// codes (and rarely a 4-bit code). Either state dequantizes identically on CPU and GPU.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "io/safetensors.h"

namespace hs::quant {

struct Nf4Tensor {
  std::vector<int64_t> shape;            // the original weight's shape, [out, in]
  at::ScalarType dtype = at::kBFloat16;  // what dequantization produces (quant_state "dtype")
  at::Tensor packed;                     // uint8 [ceil(numel/2), 1], element 2i in the high nibble
  at::Tensor absmax;         // uint8 [blocks]: 8-bit codes of the per-64-block absmax (double quant)
  at::Tensor code;           // float32 [16]: the NF4 code book ("quant_map")
  at::Tensor nested_absmax;  // float32 [ceil(blocks / 256)]
  at::Tensor nested_code;    // float32 [256] ("nested_quant_map")
  float offset = 0;          // nested offset: float32 mean of the raw absmax
  int64_t blocksize = 64, nested_blocksize = 256;

  int64_t numel() const;   // product of shape
  int64_t blocks() const;  // ceil(numel / blocksize)
  Nf4Tensor to(at::Device device) const;
  at::Device device() const;  // where packed lives
  int64_t bytes() const;      // device bytes held (for memory reports)
  // Throws hs::Error (naming `what`) unless every tensor has the dtype and size its meaning requires.
  void check(const std::string& what) const;
};

// The 16 NF4 values (bitsandbytes' table) and its dynamic 8-bit map (create_dynamic_map(signed=True), the
// nested_quant_map), float32 CPU tensors.
at::Tensor nf4_code();
at::Tensor dynamic_code();

// bitsandbytes' quantize_4bit(w, quant_type="nf4", blocksize=64, compress_statistics=True) on the CPU
// (weight on any device; computed in float32 from the weight's values). Result on the weight's device,
// dtype = the weight's dtype (float32/bfloat16/float16). On CUDA in CUDA builds a GPU kernel quantizes.
Nf4Tensor quantize_nf4(const at::Tensor& weight);
Nf4Tensor quantize_nf4_reference(const at::Tensor& weight);  // ATen reference (any device)

// [shape] in q.dtype on q's device (the CUDA kernel when built and q is on CUDA, else the reference).
at::Tensor dequantize_nf4(const Nf4Tensor& q);
at::Tensor dequantize_nf4_reference(const Nf4Tensor& q);  // ATen reference (any device)
// dequantize_nf4(q).to(out's dtype) written into `out` (contiguous, q.numel() elements, on q's device): on
// CUDA in out's dtype equal to q.dtype the kernel writes `out` directly (no temporary), else a copy.
void dequantize_nf4_into(const Nf4Tensor& q, at::Tensor& out);

// transformers' pre-quantized layout of weight `name` (e.g. "model.layers.0.self_attn.q_proj.weight"):
// name (uint8 packed), name.absmax, name.quant_map, name.nested_absmax, name.nested_quant_map,
// name.quant_state.bitsandbytes__nf4 (uint8 bytes of a JSON: quant_type, blocksize, dtype, shape,
// nested_blocksize, nested_offset, nested_dtype). Supported: quant_type nf4, blocksize 64, double
// quantization (nested_blocksize 256, nested_dtype float32); anything else is an hs::Error naming the tensor
// and key. has_nf4: the checkpoint holds a bitsandbytes 4-bit quant state for `name` (nf4, or fp4, which
// read_nf4 refuses with its error); read_nf4 loads it onto `device` (CPU first, then copied).
bool has_nf4(const io::Checkpoint& ck, const std::string& name);
Nf4Tensor read_nf4(const io::Checkpoint& ck, const std::string& name, at::Device device);
// The tensors to write for `name` in that layout (CPU, contiguous), in the order above.
std::vector<std::pair<std::string, at::Tensor>> nf4_tensors_for_save(const std::string& name,
                                                                     const Nf4Tensor& q);

}  // namespace hs::quant
