// Where and in what precision a model runs, from the CLI's --device / --dtype words: "auto" picks the
// GPU of this rank's node-local index when LibTorch sees one (else the CPU), and bf16 on a GPU, fp32 on
// the CPU. Errors name the word and list the valid ones.
#pragma once

#include <string>

#include <ATen/ATen.h>

namespace hs::model {

// "auto" | "cpu" | "cuda" | "cuda:N". local_rank picks the GPU for "auto" and "cuda" (modulo the count).
at::Device resolve_device(const std::string& name, int local_rank = 0);
// "auto" | "float32" | "bfloat16" | "float16" (and the fp32/bf16/fp16 spellings).
at::ScalarType resolve_dtype(const std::string& name, const at::Device& device);
int cuda_device_count();

}  // namespace hs::model
