// Where and in what precision a model runs, from the CLI's --device / --dtype words: "auto" picks the
// GPU of this rank's node-local index when LibTorch sees one (else the CPU), and bf16 on a GPU, fp32 on
// the CPU. Errors name the word and list the valid ones. Every subcommand and the trainer resolve through
// these two functions, with the words of kDtypeHelp / kDeviceHelp. Also the one home of the device table:
// a device's name, its dense bf16 peak FLOP/s (for MFU) and the run's peak memory.
#pragma once

#include <string>

#include <ATen/ATen.h>

namespace hs::model {

// "auto" | "cpu" | "cuda" | "cuda:N". local_rank picks the GPU for "auto" and "cuda" (modulo the count).
at::Device resolve_device(const std::string& name, int local_rank = 0);
// "auto" | "float32" | "bfloat16" | "float16" (and the fp32/bf16/fp16 spellings).
at::ScalarType resolve_dtype(const std::string& name, const at::Device& device);
int cuda_device_count();

// The words, as --help shows them.
inline constexpr const char* kDeviceHelp = "auto, cpu, cuda or cuda:N";
inline constexpr const char* kDtypeHelp = "auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16";

// "cpu", or the GPU's name ("NVIDIA H100 80GB HBM3"; "" when unknown).
std::string device_name(const at::Device& device);
// Dense bf16 tensor-core peak FLOP/s of a GPU from what the device reports: SMs x peak clock x dense bf16
// FLOPs per SM per clock of its architecture (compute capability 8.0: 2048, 8.6/8.7/8.9: 1024, 9.0: 4096,
// 10.x: 8192; others, or no bf16 tensor cores: 0 = unknown, and MFU is not reported). No name table: an
// H100 PCIe, SXM or H200 gets its own SM count and clock.
double peak_bf16_flops(int cc_major, int cc_minor, int multiprocessors, double clock_khz);
// The same for a device of this process (0 on the CPU or when the device cannot be asked).
double peak_bf16_flops(const at::Device& device);
// Peak memory of this process so far: on a GPU, the most LibTorch's caching allocator had allocated; else
// the host's peak resident set.
double peak_memory_bytes(const at::Device& device);

}  // namespace hs::model
