// The GPU table of `hsloth plan` (see gpus.h). Peaks are the basis the trainer's MFU uses
// (model::peak_bf16_flops: SMs x boost clock x dense bf16 FLOPs per SM per clock of the architecture), with
// the datasheet's dense number beside it; memory is what the device reports as total (GiB); bandwidths are
// datasheet numbers. Efficiencies: measured on H100 SXM (sources in kH100); other kinds reuse them, marked
// uncalibrated, until someone measures them (bench/plan_accuracy.py prints what to put here).
#include "plan/gpus.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace hs::plan {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr double T = 1e12, G = 1e9;

// hsloth's LoRA fast path on one H100 SXM (NVIDIA H100 80GB HBM3), Llama-3.2-1B and Qwen3-0.6B, 8 x 2048
// packed tokens, r = 16 on all seven projections, grad_ckpt off:
// - gemm, attn_*, lora_bytes, fused_factor, loss_factor: the per-class GPU times of
//   bench/results/profile_after_{llama3.2-1b,qwen3-0.6b}_h100.md divided by this model's FLOPs or minimal
//   bytes (GEMM 761 / 750 TFLOP/s = 0.711 / 0.701 of 1070.5; attention 201 TFLOP/s at head_dim 64 (Llama),
//   247 at 128 (Qwen3); LoRA 12.0 / 12.3 bytes per (in+out) element per token; RMSNorm/RoPE/SwiGLU + ATen
//   elementwise 1.35 x minimal bytes (Llama); cross-entropy 1.92 / 1.90 x).
// - small_norm_factor: fitted so that the totals give the measured 71,421 (Llama) and 82,677 (Qwen3) tokens/s
//   of bench/results/train_vs_peers_h100_rows.md (the profiled step runs 1% / 13% slower than the timed ones:
//   the profiler inflates Qwen3's many small kernels).
// - misc, layer_s: least squares over the 10 LoRA runs of bench/results/plan_accuracy_h100.json (8k and 16k
//   tokens, checkpointing off/on, three shapes): step = 1.006 x the kernel classes + 0.39 ms per layer and
//   micro-batch (x 4/3 with checkpointing), which is what makes small micro-batches slower per token.
// - nf4_call_s, full_step_bytes: from the same runs: QLoRA steps ran 3-8 ms slower than LoRA's at the same
//   settings (unpacking bytes + ~6 us per call); full fine-tuning's step time is a per-token part plus a
//   constant (the optimizer step: ~36 ms for Llama-3.2-1B, ~24 ms for Qwen3-0.6B), 144 B per parameter.
// - offload_gbs, attn_per_doubling, attn_max_gain: bench/results/train_8b_offload_h100.json and the lead's
//   Llama-3.1-8B runs (bench/RESULTS.md): grad_ckpt = offload cost 24-26 ms more per 4 x 2048 step than
//   grad_ckpt = on (4.3 GB of layer inputs out and back: ~175 GB/s effective); one sample of 8,192 / 32,768
//   tokens per step ran flash-attention at 2.1x / 2.25x its efficiency on 2048-token samples.
// - attn_dense_d64, attn_dense_d128: bench/results/train_vs_peers_s6_h100.md, the same binary with the
//   equal-segment attention off (HS_ATTENTION_SEGMENTS=varlen) and on, 8 x 2048 rows: Llama-3.2-1B 73,248 ->
//   77,037 tok/s, Qwen3-0.6B 82,721 -> 94,910: the profiles' attention time (38.3 / 60.2 ms a step) less the
//   step time saved gives cuDNN's kernel 1.40x / 1.73x flash's varlen speed (bench/attention_bench.py, fwd +
//   bwd of one layer with hsloth's layouts on an H200: 1.45x / 1.70x).
// - lora_bytes 12.1 -> 10.2: session 7 writes each LoRA product first and lets the base GEMM accumulate into
//   it (one pass over the output fewer in the forward and the dX); same call, alternating binaries
//   (bench/results/ab_lora_term_first_s7_h100.log), Llama-3.2-1B 8 x 2048: 77,888 -> 80,430 tok/s, 6.7 ms
//   less per step over 16 x 44,032 (in+out) elements x 16,384 tokens at 3.35 TB/s = 1.95 B per element-token.
// - bucket_overlap, bucket_tensor_s: bench/results/scaling_h200x2.md (2 x H200): Llama-3.2-1B full at -np 2
//   lost 14.2 ms per step to one all-reduce (the ring model's 13.7 ms) and 11.5 ms with 25 MB buckets (~20%
//   hidden); LoRA / QLoRA 8B with buckets lost 19.5 / 22 ms for 0.9 ms of all-reduce: ~40 us per trainable
//   tensor (448 LoRA tensors) for the gradient hooks.
const Efficiency kH100{.gemm = 0.705,
                       .attn_d64 = 0.188,
                       .attn_d128 = 0.231,
                       .attn_per_doubling = 0.54,
                       .attn_max_gain = 2.25,
                       .attn_dense_d64 = 1.40,
                       .attn_dense_d128 = 1.73,
                       .lora_bytes = 10.2,
                       .fused_factor = 1.35,
                       .small_norm_factor = 3.9,
                       .loss_factor = 1.91,
                       .misc = 0.006,
                       .layer_s = 0.39e-3,
                       .offload_gbs = 175.0,
                       .nf4_call_s = 6e-6,
                       .full_step_bytes = 144.0,
                       .bucket_overlap = 0.2,
                       .bucket_tensor_s = 40e-6,
                       .source =
                           "H100 SXM: profiles and tokens/s in bench/results (LoRA; plan_accuracy_h100: "
                           "QLoRA, full; train_8b_offload_h100: offload, long samples)",
                       .calibrated = true};

// H200 (2 x H200 runs of bench/results/scaling_h200x2.md at -np 1: Llama-3.1-8B LoRA 10,743 tok/s, QLoRA
// 10,381, Llama-3.2-1B full 46,242; H100: 10,712, 10,225, 41,553-44,282): the same chip and clocks with
// faster HBM that the bandwidth-bound kernels do not turn into speed. H100's numbers with the byte factors
// scaled by the bandwidth ratio, so that those kernels take H100's time.
Efficiency h200_efficiency() {
  Efficiency e = kH100;
  const double r = 4.8 / 3.35;
  e.lora_bytes *= r, e.fused_factor *= r, e.small_norm_factor *= r, e.loss_factor *= r,
      e.full_step_bytes *= r;
  e.source = "H200: H100 SXM's with bandwidth-bound work at H100's speed (bench/results/scaling_h200x2.md)";
  return e;
}

Efficiency assumed(const char* from) {
  Efficiency e = kH100;
  e.calibrated = false;
  e.source = std::string("assumed: the ") + from + " fractions (not measured on this GPU)";
  return e;
}

std::vector<GpuSpec> make_table() {
  const Efficiency h100 = assumed("H100 SXM");
  // GeForce cards run bf16 tensor-core math with fp32 accumulation at half the rate the MFU basis counts.
  Efficiency geforce = h100;
  geforce.gemm /= 2, geforce.attn_d64 /= 2, geforce.attn_d128 /= 2;
  geforce.source += "; GEMM and attention halved (GeForce fp32-accumulate rate)";
  std::vector<GpuSpec> t;
  // name, keys, memory, peak (MFU basis), HBM, all-reduce bus bandwidth, interconnect, source
  t.push_back(
      {"H100 SXM",
       {"h100sxm", "h100", "h10080gbhbm3", "h100sxm580gb"},
       79.2 * kGiB,
       1070.5 * T,
       3.35 * T,
       360 * G,
       "NVLink 4 (900 GB/s)",
       "NVIDIA H100 datasheet: 80 GB HBM3, 3.35 TB/s, 989 TFLOP/s dense bf16 (MFU basis: 132 SMs x 1.98 "
       "GHz x 4096)",
       kH100});
  t.push_back(
      {"H100 PCIe",
       {"h100pcie"},
       79.2 * kGiB,
       819.5 * T,
       2.0 * T,
       25 * G,
       "PCIe 5",
       "NVIDIA H100 datasheet: 80 GB HBM2e, 2.0 TB/s, 756 TFLOP/s dense bf16 (basis: 114 SMs x 1.755 GHz "
       "x 4096)",
       h100});
  t.push_back(
      {"H100 NVL",
       {"h100nvl"},
       93.1 * kGiB,
       965.2 * T,
       3.9 * T,
       25 * G,
       "PCIe 5 (NVLink bridge in pairs)",
       "NVIDIA H100 NVL datasheet: 94 GB HBM3, 3.9 TB/s, 835 TFLOP/s dense bf16 (basis: 132 SMs x 1.785 "
       "GHz x 4096)",
       h100});
  t.push_back(
      {"H200",
       {"h200", "h200sxm", "h200nvl"},
       139.8 * kGiB,
       1070.5 * T,
       4.8 * T,
       360 * G,
       "NVLink 4 (900 GB/s)",
       "NVIDIA H200 datasheet: 141 GB HBM3e, 4.8 TB/s, 989 TFLOP/s dense bf16 (basis: 132 SMs x 1.98 GHz "
       "x 4096)",
       h200_efficiency()});
  t.push_back({"B200",
               {"b200"},
               178.4 * kGiB,
               2382.0 * T,
               8.0 * T,
               700 * G,
               "NVLink 5 (1.8 TB/s)",
               "NVIDIA DGX B200 / HGX B200: 180 GB HBM3e, 8 TB/s, 2250 TFLOP/s dense bf16 (basis: 148 SMs x "
               "1.965 GHz x 8192)",
               h100});
  t.push_back(
      {"A100 80GB",
       {"a100", "a10080gb", "a100sxm480gb", "a100sxm80gb", "a10080gbpcie"},
       79.2 * kGiB,
       311.9 * T,
       2.039 * T,
       230 * G,
       "NVLink 3 (600 GB/s)",
       "NVIDIA A100 datasheet: 80 GB HBM2e, 2.04 TB/s (SXM; PCIe 1.94), 312 TFLOP/s dense bf16 (basis: "
       "108 SMs x 1.41 GHz x 2048)",
       h100});
  t.push_back({"A100 40GB",
               {"a10040gb", "a100sxm440gb", "a100pcie40gb", "a10040gbpcie"},
               39.4 * kGiB,
               311.9 * T,
               1.555 * T,
               230 * G,
               "NVLink 3 (600 GB/s)",
               "NVIDIA A100 datasheet: 40 GB HBM2, 1.56 TB/s, 312 TFLOP/s dense bf16",
               h100});
  t.push_back({"L40S",
               {"l40s"},
               44.4 * kGiB,
               366.4 * T,
               0.864 * T,
               20 * G,
               "PCIe 4",
               "NVIDIA L40S datasheet: 48 GB GDDR6 (ECC), 864 GB/s, 362 TFLOP/s dense bf16 (basis: 142 SMs x "
               "2.52 GHz x 1024)",
               h100});
  t.push_back({"A40",
               {"a40"},
               44.4 * kGiB,
               149.7 * T,
               0.696 * T,
               20 * G,
               "PCIe 4",
               "NVIDIA A40 datasheet: 48 GB GDDR6 (ECC), 696 GB/s, 149.7 TFLOP/s dense bf16",
               h100});
  t.push_back({"A10",
               {"a10"},
               22.1 * kGiB,
               125.0 * T,
               0.6 * T,
               20 * G,
               "PCIe 4",
               "NVIDIA A10 datasheet: 24 GB GDDR6, 600 GB/s, 125 TFLOP/s dense bf16",
               h100});
  t.push_back({"L4",
               {"l4"},
               22.0 * kGiB,
               121.2 * T,
               0.3 * T,
               20 * G,
               "PCIe 4",
               "NVIDIA L4 datasheet: 24 GB GDDR6, 300 GB/s, 121 TFLOP/s dense bf16",
               h100});
  t.push_back(
      {"RTX 4090",
       {"rtx4090", "4090", "geforcertx4090"},
       23.6 * kGiB,
       330.3 * T,
       1.008 * T,
       20 * G,
       "PCIe 4",
       "NVIDIA Ada whitepaper: 24 GB GDDR6X, 1008 GB/s; 330 TFLOP/s bf16 with fp16 accumulate, 165 with "
       "fp32 accumulate (GeForce half rate: MFU against 330 reads low)",
       geforce});
  t.push_back({"RTX 3090",
               {"rtx3090", "3090", "geforcertx3090"},
               23.6 * kGiB,
               142.3 * T,
               0.936 * T,
               20 * G,
               "PCIe 4",
               "NVIDIA Ampere GA102 whitepaper: 24 GB GDDR6X, 936 GB/s; 142 TFLOP/s bf16 (71 with fp32 "
               "accumulate)",
               geforce});
  return t;
}

std::string squash(const std::string& s) {
  std::string out;
  for (char c : s)
    if (std::isalnum(static_cast<unsigned char>(c))) out += char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// "80GiB", "80gb", "24G", "48 GB" -> bytes (GB read as GiB: cards are sold in GB and report ~GiB).
std::optional<double> parse_size(const std::string& s) {
  const std::string q = squash(s);
  size_t i = 0;
  while (i < q.size() && (std::isdigit(static_cast<unsigned char>(q[i])) || q[i] == '.')) ++i;
  if (i == 0) return std::nullopt;
  const std::string unit = q.substr(i);
  if (unit != "gib" && unit != "gb" && unit != "g") return std::nullopt;
  const double v = std::atof(q.substr(0, i).c_str());
  if (v <= 0) return std::nullopt;
  return v * kGiB;
}

}  // namespace

const std::vector<GpuSpec>& known_gpus() {
  static const std::vector<GpuSpec> table = make_table();
  return table;
}

std::optional<GpuSpec> find_gpu(const std::string& name_or_size) {
  std::string q = squash(name_or_size);
  if (q.empty()) return std::nullopt;
  if (auto bytes = parse_size(name_or_size)) {
    GpuSpec g;
    g.name = name_or_size;
    g.memory_bytes = *bytes;
    g.memory_only = true;
    g.source = "given as a memory size";
    return g;
  }
  // An exact word ("h100", "A100-40GB") first; then a device name as CUDA reports it, read as words
  // ("NVIDIA A100-SXM4-40GB": nvidia, a100, sxm4, 40gb) whose longest run of consecutive words is a key
  // (a100sxm440gb), so "h1000" is no "h100".
  for (const auto& g : known_gpus())
    for (const auto& k : g.keys)
      if (q == k || q == "nvidia" + k) return g;
  std::vector<std::string> words;
  std::string w;
  for (char ch : name_or_size + " ") {
    if (std::isalnum(static_cast<unsigned char>(ch))) {
      w += char(std::tolower(static_cast<unsigned char>(ch)));
    } else if (!w.empty()) {
      words.push_back(w);
      w.clear();
    }
  }
  const GpuSpec* best = nullptr;
  size_t best_len = 0;
  for (size_t i = 0; i < words.size(); ++i) {
    std::string run;
    for (size_t j = i; j < words.size() && j < i + 4; ++j) {
      run += words[j];
      for (const auto& g : known_gpus())
        for (const auto& k : g.keys)
          if (run == k && k.size() > best_len) {
            best = &g;
            best_len = k.size();
          }
    }
  }
  if (best) {
    // A100s are named by memory ("A100-SXM4-40GB", "A100-PCIE-40GB"): a bare "a100" must not take a 40 GB
    // card.
    if (best->name == "A100 80GB" && q.find("40gb") != std::string::npos)
      for (const auto& g : known_gpus())
        if (g.name == "A100 40GB") return g;
    return *best;
  }
  return std::nullopt;
}

std::string known_gpu_words() {
  std::string out;
  for (const auto& g : known_gpus()) {
    std::string w;
    for (char c : g.name) w += c == ' ' ? '-' : char(std::tolower(static_cast<unsigned char>(c)));
    out += (out.empty() ? "" : ", ") + w;  // "a100-40gb": find_gpu reads it back
  }
  return out;
}

}  // namespace hs::plan
