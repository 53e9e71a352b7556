// bitsandbytes' NF4 (blocksize 64, double-quantized absmax) on the GPU behind plain launchers (raw pointers,
// no LibTorch types). The CPU/ATen reference and the format are in src/quant/nf4.h;
// tests/cuda/test_nf4_gpu.cpp compares these kernels with it bit for bit.
//
// Dequantize: out[i] = round_dtype(code[nibble(i)] * a(i / 64)), a(b) = (nested_code[absmax[b]] *
// nested_absmax[b / 256]) + offset, each product and sum one float32 rounding (no FMA), as bitsandbytes.
// Each thread decodes 8 packed bytes (16 outputs; one 64-block = 4 threads), vector stores.
// Memory floor for an [out, in] weight of n elements: reads n/2 + n/64 bytes, writes n * sizeof(dtype);
// bf16 output = 2.52 n bytes. At 3.35 TB/s (H100 SXM): an 8B model's 6.98e9 projection weights, 17.6 GB,
// 5.2 ms; one 4096 x 14336 weight, 148 MB, 44 us. Measured (H100, bench/kernels_bench): 62.7 us for that weight
// (70% of the floor's speed), 21.5 us for 4096 x 4096 (12.6 us floor, 58%).
//
// Quantize (at load): nf4_quantize_blocks writes the packed codes and the raw float32 absmax per 64-block
// with bitsandbytes' CUDA rules (x * approximate 1/absmax, as its --use_fast_math build; then its NF4
// decision tree of midpoints); the caller takes the float32 mean of the absmax (the offset, as bitsandbytes'
// torch .mean()), then nf4_quantize_absmax writes the 8-bit codes of (absmax - offset) per 256-block with
// bitsandbytes' CUDA rule and the nested absmax. Memory floor: reads 2 n bytes (bf16), writes n/2 + n/16: an
// 8B model's 6.98e9 projection weights move 17.9 GB = 5.3 ms at 3.35 TB/s, far under the 15 s load budget
// (reading the safetensors dominates).
#pragma once

#include <cstdint>

namespace hs::kernels {

enum class Nf4Out : int { f32 = 0, bf16 = 1, f16 = 2 };

// packed: uint8 [ceil(n/2)] (element 2i in the high nibble); absmax: uint8 [ceil(n/64)];
// code: float32 [16]; nested_absmax: float32 [ceil(ceil(n/64)/256)]; nested_code: float32 [256];
// out: [n] of `out_type`. All device pointers. Returns a cudaError_t value (0 = success).
int nf4_dequantize(const uint8_t* packed, const uint8_t* absmax, const float* code,
                   const float* nested_absmax, const float* nested_code, float offset, void* out, int64_t n,
                   Nf4Out out_type, void* stream);

// w: [n] of `in_type` (f32/bf16/f16). packed: uint8 [ceil(n/2)] (for odd n the last low nibble is the code of
// 0.0, as bitsandbytes pads with 0); absmax: float32 [ceil(n/64)], the raw per-64-block absmax.
int nf4_quantize_blocks(const void* w, Nf4Out in_type, int64_t n, uint8_t* packed, float* absmax,
                        void* stream);

// absmax: float32 [blocks] (raw), offset: their float32 mean; nested_code: float32 [256] (sorted);
// absmax_code: uint8 [blocks]; nested_absmax: float32 [ceil(blocks/256)].
int nf4_quantize_absmax(const float* absmax, int64_t blocks, float offset, const float* nested_code,
                        uint8_t* absmax_code, float* nested_absmax, void* stream);

}  // namespace hs::kernels
