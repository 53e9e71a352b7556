// The decoder's hot operations, each behind one small function so a CUDA kernel can replace it later
// without touching the model: RMSNorm, RoPE (cos/sin tables computed once, in float32), SwiGLU, causal
// attention over packed rows, the (LoRA) projection and the masked cross-entropy. Every function is the
// reference: it reproduces Hugging Face transformers' rounding order (RMSNorm in float32 then cast, RoPE
// tables in float32 cast to the activation dtype, PEFT's LoRA branch added after the base projection), so
// fp32 results match transformers to ~1e-6 and a kernel is checked against these.
#pragma once

#include <vector>

#include <cstdint>
#include <optional>

#include <ATen/ATen.h>

#include "io/hf_config.h"

namespace hs::model {
class Projection;  // model/linear.h
}

namespace hs::model::ops {

// Whether ops with a project CUDA kernel use it: true in CUDA builds unless HS_KERNELS=0 is set (then every
// op runs its ATen reference, for A/B comparisons). The kernels and their dispatch live in ops_cuda.cpp.
bool kernels_enabled();

// HF LlamaRMSNorm: float32 x * rsqrt(mean(x^2) + eps), cast back to x's dtype, times weight. On CUDA in
// float32/bfloat16 this runs kernels/rms_norm (forward and backward, autograd-aware); elsewhere the reference.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);
at::Tensor rms_norm_reference(const at::Tensor& x, const at::Tensor& weight, double eps);
bool rms_norm_has_kernel(const at::Tensor& x, const at::Tensor& weight);
at::Tensor rms_norm_kernel(const at::Tensor& x, const at::Tensor& weight, double eps);  // CUDA builds only

// Inverse frequencies [head_dim/2] in float32 for the config's rope type (default, linear, llama3),
// computed exactly as transformers does.
at::Tensor rope_inv_freq(const io::HfConfig& config);

// cos/sin for positions [0, positions), [positions, head_dim], float32, on `device`.
struct RopeTable {
  at::Tensor cos, sin;
  int64_t positions() const { return cos.defined() ? cos.size(0) : 0; }
};
RopeTable rope_table(const io::HfConfig& config, int64_t positions, at::Device device);

// Applies RoPE (HF rotate_half convention) to x [B, heads, T, head_dim] at position_ids [B, T]. On CUDA,
// when x is a transposed view of a [B, T, heads, head_dim] buffer (as the model makes it), kernels/rope runs
// it (bit-exact with the reference; the backward saves nothing but positions); elsewhere the reference.
at::Tensor rope(const at::Tensor& x, const RopeTable& table, const at::Tensor& position_ids);
at::Tensor rope_reference(const at::Tensor& x, const RopeTable& table, const at::Tensor& position_ids);
bool rope_has_kernel(const at::Tensor& x, const RopeTable& table, const at::Tensor& position_ids);
at::Tensor rope_kernel(const at::Tensor& x, const RopeTable& table,
                       const at::Tensor& position_ids);  // CUDA only

// silu(gate) * up (kernels/swiglu on CUDA in float32/bf16: saves gate and up, recomputes silu backward).
at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up);
at::Tensor swiglu_reference(const at::Tensor& gate, const at::Tensor& up);
bool swiglu_has_kernel(const at::Tensor& gate, const at::Tensor& up);
at::Tensor swiglu_kernel(const at::Tensor& gate, const at::Tensor& up);  // CUDA builds only

// x W^T + b (b may be undefined).
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

// PEFT's LoRA branch: lora_B(lora_A(dropout(x))) * scaling, A: [r, in], B: [out, r], computed in the
// adapter's dtype as PEFT does (x is cast to A's dtype: float32 adapters on a bf16 base run in float32).
// dropout_p applies when training.
at::Tensor lora_delta(const at::Tensor& x, const at::Tensor& a, const at::Tensor& b, double scaling,
                      double dropout_p, bool training);
// linear(x, W, bias) + lora_delta(...), in PEFT's order: the base result is added to the delta in the
// promoted dtype and the sum cast back to the base result's dtype. The fast path below replaces it when
// lora_linear_has_fast_path() holds.
at::Tensor lora_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                       const at::Tensor& a, const at::Tensor& b, double scaling, double dropout_p,
                       bool training);
at::Tensor lora_linear_reference(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                 const at::Tensor& a, const at::Tensor& b, double scaling, double dropout_p,
                                 bool training);
// The training fast path (CUDA builds, kernels_enabled(), bf16 activations and frozen bf16 base, no dropout,
// A or B trainable; with or without autograd recording, so a checkpointed layer's forward and recomputation
// agree; inference on a loaded adapter keeps PEFT's arithmetic): one autograd function with a hand-written
// backward, everything in bf16 GEMMs with float32 accumulation, A and B rounded to bf16 for the GEMMs (as
// Unsloth does; their float32 masters get float32 gradients). Forward y = x W^T (+ b) + s (x A^T) B^T with
// the LoRA product added by the GEMM's epilogue (beta = 1); it saves only x (shared by q/k/v), x A^T [N, r]
// and the bf16 copies of A and B. Backward: g B [N, r]; dX = g W + s (g B) A; dA = s (g B)^T x; dB = s g^T (x
// A^T) (float32 outputs); the base weight gets no gradient.
bool lora_linear_has_fast_path(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& a,
                               const at::Tensor& b, double dropout_p, bool training);
at::Tensor lora_linear_fast(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                            const at::Tensor& a, const at::Tensor& b, double scaling);  // CUDA builds only

// A frozen projection with its LoRA branch, for the fast path and the fused blocks below. The base is
// dense (`weight`) or packed (`packed`, e.g. NF4: weight undefined, packed->unpack_weight() makes it on
// demand in the forward and again in the backward, so no dense copy is held between them).
struct LoraProj {
  at::Tensor weight, bias;  // [out, in], [out] or undefined
  at::Tensor a, b;          // [r, in], [out, r]
  double scaling = 1, dropout = 0;
  const Projection* packed = nullptr;  // outlives the autograd graph (the model owns it)
};
// The single-projection fast path (lora_linear_fast's conditions; a packed base instead of a bf16 weight).
bool lora_proj_has_fast_path(const at::Tensor& x, const LoraProj& p, bool training);
at::Tensor lora_proj_fast(const at::Tensor& x, const LoraProj& p);  // CUDA builds only
// q, k and v with LoRA from one input as one autograd function: one GEMM over the three bases' rows (a
// view when they lie back to back, as Model::load lays them out on CUDA, else a copy made per call), one
// x [A_q; A_k; A_v]^T, and in the backward one dX GEMM over the concatenated output gradient. Same
// conditions as lora_proj_has_fast_path for all three, biases on all or none, equal scalings. Returns
// [N, out_q + out_k + out_v] (callers split it; split's backward concatenates the gradients once).
bool lora_qkv_has_fast_path(const at::Tensor& x, const LoraProj& q, const LoraProj& k, const LoraProj& v,
                            bool training);
at::Tensor lora_qkv_fast(const at::Tensor& x, const LoraProj& q, const LoraProj& k,
                         const LoraProj& v);  // CUDA builds only
// The SwiGLU MLP with LoRA on gate, up and down as one autograd function (the fast path's conditions as in
// lora_proj_has_fast_path, for all three): down(silu(gate(x)) * up(x)). gate and up run as one GEMM over
// their concatenated rows (as q/k/v above) with one concatenated A. It saves x, gate(x) and up(x) (and the
// [N, r] products) but not silu(gate) * up, which the backward recomputes (Unsloth's LoRA_MLP); the
// elementwise roundings are transformers' (silu rounded, product rounded; silu_backward).
bool lora_mlp_has_fast_path(const at::Tensor& x, const LoraProj& gate, const LoraProj& up,
                            const LoraProj& down, bool training);
at::Tensor lora_mlp_fast(const at::Tensor& x, const LoraProj& gate, const LoraProj& up,
                         const LoraProj& down);  // CUDA builds only

// Which tokens a query may attend to. Plain causal rows, or packed rows: several samples per row whose
// boundaries are given by cu_seqlens (int32, cumulative lengths over the flattened [B*T] tokens, as in
// flash-attention's varlen API: 0, len0, len0+len1, ..., B*T). Attention never crosses a boundary.
// Packed rows run as flash-attention varlen on CUDA in bf16/fp16 (ATen's _flash_attention_forward with
// cu_seqlens); elsewhere (CPU, fp32) each sample runs its own causal SDPA, so work is sum(len^2), not T^2.
struct AttentionLayout {
  at::Tensor cu_seqlens;  // int32 on the device; undefined: every row is one causal sequence
  int64_t max_seqlen = 0;
  std::vector<int64_t> bounds;  // host copy of cu_seqlens when rows are packed (empty otherwise)
  // > 0 when the packed samples all have this length and start at multiples of it (so every row holds whole
  // ones: fixed-length blocks, the benchmarks' 2048-token rows): on CUDA they are attended as B*T/L plain
  // causal rows of L (one batched SDPA call, which picks cuDNN's attention on Hopper: 1.7x flash's varlen
  // there) instead of through flash-attention's varlen kernel. HS_ATTENTION_SEGMENTS=varlen turns it off.
  int64_t segment_len = 0;
  // Set by pad_samples(): the packed samples, padded at their ends to the longest, as pad_rows plain causal rows
  // of pad_len in one SDPA call; pad_index[j] = the padded slot (row * pad_len + position) of packed token j.
  // Causal attention never lets a sample's tokens see the padding after them, so their outputs are exact; the
  // padded slots' outputs are dropped (no gradient flows back from them).
  at::Tensor pad_index;
  int64_t pad_rows = 0, pad_len = 0;
  bool causal = true;
};
// Builds the layout for a [B, T] batch; cu_seqlens may be undefined (plain causal rows). Checks that
// every boundary lies inside [0, B*T] and that rows split at sample boundaries.
AttentionLayout attention_layout(const at::Tensor& cu_seqlens, int64_t batch, int64_t seq_len,
                                 at::Device device);

// Gives a packed layout (bounds set, segment_len 0) the padded form above when padding every sample to the longest
// costs at most max_pairs times the real samples' causal pairs; false (layout unchanged) otherwise. attention_layout
// calls it on CUDA when HS_ATTENTION_PADDED=1 (with 1.25): SDPA there takes cuDNN's kernel, 1.4-1.7x flash-attention's
// varlen kernel on Hopper, which near-equal lengths (length-sorted micro-batches) can turn into speed.
bool pad_samples(AttentionLayout& layout, double max_pairs);

// Scaled dot-product attention, q: [B, H, T, D], k/v: [B, KV, S, D] (GQA when KV < H), softmax scale
// D^-0.5. Packed rows (layout.bounds) attend within their samples only; otherwise causal when T == S, or a
// causal mask offset by S - T (decoding with a KV cache: the new queries are the last T positions).
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const AttentionLayout& layout);

// Sum of token cross-entropies (float32 log-softmax of logits [N, V]) against targets [N] and the count
// of targets; callers divide by the count of a whole optimizer step.
struct LossSum {
  at::Tensor sum;  // float32 scalar, differentiable
  int64_t count = 0;
};
LossSum cross_entropy_sum(const at::Tensor& logits, const at::Tensor& targets);

// The loss boundary of the model: the language-model head and the cross-entropy together, hidden [N, H]
// (final-norm states of the targeted positions), weight [V, H] (lm_head), targets [N]. Equal to
// cross_entropy_sum(linear(hidden, weight), targets), which is the reference; a fused kernel replaces both
// here without materialising [N, V] logits. Without autograd (eval) the logits are made a chunk of rows at a
// time (float64 sum of the chunk sums), so memory is bounded however long the sample.
LossSum linear_cross_entropy(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets);
// The fused path (CUDA builds, kernels_enabled(), bf16, autograd recording): rows in chunks of at most
// 2^27 / vocab; per chunk the bf16 logits GEMM, then kernels/cross_entropy (float32 log-sum-exp and loss per
// row, and the gradient softmax - onehot rounded to bf16 over the logits), multiplied straight into d hidden
// (and d weight in float32 when the head trains), so [N, V] logits never exist whole. The backward only
// scales those by the incoming gradient.
bool linear_cross_entropy_has_fast_path(const at::Tensor& hidden, const at::Tensor& weight);
LossSum linear_cross_entropy_fast(const at::Tensor& hidden, const at::Tensor& weight,
                                  const at::Tensor& targets);  // CUDA builds only

}  // namespace hs::model::ops
