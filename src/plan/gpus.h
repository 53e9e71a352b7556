// The GPUs `hsloth plan` knows: memory, dense bf16 peak and HBM bandwidth of each (from its datasheet, or as
// model::peak_bf16_flops computes the peak for MFU), and the efficiencies at which hsloth's step runs on it
// (calibrated on a measured GPU, assumed elsewhere), with where each number came from. One table, in
// gpus.cpp. A GPU given only by its memory size ("80GiB") gets a memory plan and no speed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace hs::plan {

// Fractions of peak (GEMM, attention) and multiples of the minimal bytes moved (bandwidth-bound work) at
// which hsloth's step runs. Times: FLOPs / (peak x efficiency), bytes x factor / bandwidth.
struct Efficiency {
  double gemm = 0;               // base projections and lm_head (large bf16 GEMMs)
  double attn_d64 = 0;           // flash-attention at head_dim 64, 2048-token samples
  double attn_d128 = 0;          // at head_dim 128 (and above)
  double attn_per_doubling = 0;  // attention efficiency gain per doubling of the sample length past 2048
  double attn_max_gain = 1;      // ... up to this multiple
  // Packed micro-batches whose samples all have one length L dividing the row run as plain causal rows of L
  // (ops::attention's equal segments: SDPA, cuDNN's kernel on Hopper): attention efficiency x this at head_dim
  // 64 / 128 (interpolated between; 1 = no gain).
  double attn_dense_d64 = 1;
  double attn_dense_d128 = 1;
  double lora_bytes = 0;         // bytes per (in + out) element per token of the LoRA branch, fwd + bwd
  double fused_factor = 0;       // RMSNorm/RoPE/SwiGLU kernels, residual adds: x their minimal bytes
  double small_norm_factor = 0;  // qk-norm (rows of head_dim elements): x minimal bytes
  double loss_factor = 0;        // cross-entropy kernel over the logits: x minimal bytes
  double misc = 0;               // copies and small ATen ops, as a fraction of the above
  double layer_s = 0;            // fixed cost per decoder layer and micro-batch (launches, GPU idle gaps)
  double offload_gbs = 0;        // host <-> device copies of grad_ckpt = offload, GB/s (effective)
  double nf4_call_s = 0;         // fixed cost of one NF4 unpack call (QLoRA)
  double full_step_bytes = 0;    // full fine-tuning's optimizer step: bytes moved per parameter
  double bucket_overlap = 0;     // share of the all-reduce that dist.bucket_mb's buckets hide behind backward
  double bucket_tensor_s = 0;    // fixed cost per trainable tensor of the bucket hooks
  std::string source;            // where these numbers came from
  bool calibrated = false;       // measured on this GPU kind (else assumed from another)
};

struct GpuSpec {
  std::string name;                  // "H100 SXM"
  std::vector<std::string> keys;     // --gpu words and device-name substrings, lower case
  double memory_bytes = 0;           // what the device reports as total (GiB = 2^30)
  double peak_bf16 = 0;              // dense bf16 FLOP/s, the basis of MFU (0: unknown -> no speed)
  double hbm_bytes_s = 0;            // HBM bandwidth, bytes/s
  double allreduce_bus_bytes_s = 0;  // NCCL all-reduce bus bandwidth within one node, bytes/s
  std::string interconnect;          // "NVLink 4 (900 GB/s)"
  std::string source;                // datasheet the numbers come from
  Efficiency eff;
  bool memory_only = false;  // given as a size: no speed
};

// The table, in the order `hsloth plan --help` lists it.
const std::vector<GpuSpec>& known_gpus();
// "h100", "H100-SXM", "a100-40gb", "rtx4090", ... (case and '-', '_', ' ' ignored); a device name as CUDA
// reports it ("NVIDIA H100 80GB HBM3"); or a size ("80GiB", "24GB", "48G": memory plan only).
// nullopt when nothing matches.
std::optional<GpuSpec> find_gpu(const std::string& name_or_size);
// The --gpu words, for messages: "h100-sxm, h100-pcie, h200, ...".
std::string known_gpu_words();

}  // namespace hs::plan
