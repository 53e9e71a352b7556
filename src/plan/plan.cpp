// The estimate behind `hsloth plan` (see plan.h): parameter and byte counts from config.json, the batch
// plan from the shard lengths, memory as named terms per phase of a step, and time per micro-batch from
// FLOPs and bytes at the GPU table's efficiencies. Every activation term names the code that keeps it; when
// that code changes (e.g. q/k/v LoRA A matrices concatenated), the term to adjust is here, in layer_terms().
#include "plan/plan.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "train/zero1_layout.h"

namespace hs::plan {
namespace {

constexpr double kBf16 = 2, kF32 = 4, kF64 = 8;
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
// The fused head + cross-entropy makes logits a chunk of at most 2^27 at a time (ops_cuda.cpp ce_chunk_rows).
constexpr int64_t kLossChunkLogits = int64_t(1) << 27;
// train.grad_sum = auto keeps an fp64 gradient sum up to 2^28 trainable parameters (trainer.cpp).
constexpr int64_t kFp64SumLimit = int64_t(1) << 28;
// Whether LoRA over an NF4 base runs the fused LoRA fast path (ops_cuda.cpp: the packed base unpacked in the
// forward and the backward, nothing dense saved; since 4f8af30). false: lora::LoraLinear's PEFT path (fp32
// input copies per adapted projection), as before.
constexpr bool kQloraFastPath = true;
// What a CUDA process holds beyond its tensors: the context (~0.5 GiB on H100 with CUDA 13), cuBLAS
// workspaces; and the caching allocator's reserved-but-unallocated slack, ~5% of the peak.
constexpr double kContextBytes = 0.6 * kGiB, kSlack = 0.05;

std::string fmt(double v) {
  if (v >= 1e6 && std::fabs(v - std::round(v)) < 0.5) {
    // thousands separators keep big counts readable
    std::string s = std::to_string(int64_t(std::llround(v))), out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (i && (s.size() - i) % 3 == 0) out += ',';
      out += s[i];
    }
    return out;
  }
  char b[64];
  if (std::fabs(v - std::round(v)) < 1e-9)
    std::snprintf(b, sizeof b, "%lld", static_cast<long long>(std::llround(v)));
  else
    std::snprintf(b, sizeof b, "%.3g", v);
  return b;
}

Term bytes_term(std::string name, double count, double width, double elem, std::string what = "") {
  std::string f = fmt(count) + (what.empty() ? "" : " " + what) + (width != 1 ? " x " + fmt(width) : "") +
                  " x " + fmt(elem) + " B";
  return {std::move(name), count * width * elem, std::move(f)};
}

bool has(const std::vector<model::Proj>& v, model::Proj p) {
  return std::find(v.begin(), v.end(), p) != v.end();
}

struct Shape {
  int64_t H, I, L, Q, K, V, heads, kv, D;
  bool qk_norm, tied;
  explicit Shape(const io::HfConfig& c)
      : H(c.hidden_size),
        I(c.intermediate_size),
        L(c.num_hidden_layers),
        Q(c.q_dim()),
        K(c.kv_dim()),
        V(c.vocab_size),
        heads(c.num_attention_heads),
        kv(c.num_key_value_heads),
        D(c.head_dim),
        qk_norm(c.qk_norm),
        tied(c.tie_word_embeddings) {}
};

// The activations one decoder layer keeps for its backward on N token slots (CUDA fast path, bf16): the
// decoder of model.cpp with the autograd functions of ops_cuda.cpp.
std::vector<Term> layer_terms(const io::HfConfig& c, const RunSpec& s, double N) {
  const Shape m(c);
  const bool full = s.finetune == Finetune::full;
  // QLoRA on the fast path keeps what LoRA keeps. Without it (kQloraFastPath false) LoRA over an NF4 base is
  // lora::LoraLinear's PEFT path (base(x) + lora_delta(x), ops.cpp): the NF4 base keeps no input, each
  // adapted projection keeps its own fp32 copy of its input and an fp32 x A^T.
  const bool qlora_peft_path = s.finetune == Finetune::qlora && !kQloraFastPath;
  auto lora = [&](model::Proj p) { return !full && has(s.lora_targets, p); };
  const bool attn_in =
      full || (!qlora_peft_path && (lora(model::Proj::q) || lora(model::Proj::k) || lora(model::Proj::v)));
  const bool mlp_fused =
      !qlora_peft_path && lora(model::Proj::gate) && lora(model::Proj::up) && lora(model::Proj::down);
  const bool mlp_in = full || (!qlora_peft_path && (lora(model::Proj::gate) || lora(model::Proj::up)));
  std::vector<Term> t;
  t.push_back(bytes_term("layer input (input RMSNorm keeps it)", N, double(m.H), kBf16, "tok"));
  t.push_back(bytes_term("RMSNorm row statistics (2 norms, fp32)", N, 2, kF32, "tok"));
  if (attn_in)
    t.push_back(bytes_term("normed input (q/k/v projections keep it)", N, double(m.H), kBf16, "tok"));
  if (m.qk_norm) {
    t.push_back(
        bytes_term("q, k before qk-norm (its RMSNorm keeps them)", N, double(m.Q + m.K), kBf16, "tok"));
    t.push_back(bytes_term("qk-norm row statistics (fp32)", N, double(m.heads + m.kv), kF32, "tok"));
  }
  t.push_back(
      bytes_term("q, k after RoPE, v (flash-attention keeps them)", N, double(m.Q + 2 * m.K), kBf16, "tok"));
  t.push_back(bytes_term("attention output (o_proj input)", N, double(m.Q), kBf16, "tok"));
  t.push_back(bytes_term("attention log-sum-exp (fp32)", N, double(m.heads), kF32, "tok"));
  t.push_back(
      bytes_term("residual after attention (post-attention RMSNorm keeps it)", N, double(m.H), kBf16, "tok"));
  if (mlp_in) t.push_back(bytes_term("normed MLP input (gate/up keep it)", N, double(m.H), kBf16, "tok"));
  t.push_back(bytes_term("gate(x), up(x) (SwiGLU keeps them)", N, double(2 * m.I), kBf16, "tok"));
  if (full || (!mlp_fused && !qlora_peft_path && lora(model::Proj::down)))
    t.push_back(bytes_term("silu(gate) x up (down_proj input)", N, double(m.I), kBf16, "tok"));
  int n_lora = 0;
  double ab = 0, in_sum = 0;
  for (model::Proj p : model::kAllProjs)
    if (lora(p)) {
      ++n_lora;
      auto [out, in] = proj_shape(c, p);
      ab += double(s.lora_r) * double(in + out);
      in_sum += double(in);
    }
  if (n_lora > 0 && qlora_peft_path) {
    t.push_back(bytes_term("LoRA inputs cast to fp32 (one per adapted projection)", N, in_sum, kF32, "tok"));
    t.push_back(bytes_term("LoRA x A^T [N, r] in fp32 (" + std::to_string(n_lora) + " projections)", N,
                           double(n_lora * s.lora_r), kF32, "tok"));
  } else if (n_lora > 0) {
    t.push_back(bytes_term("LoRA x A^T [N, r] (" + std::to_string(n_lora) + " adapted projections)", N,
                           double(n_lora * s.lora_r), kBf16, "tok"));
    t.push_back(bytes_term("LoRA A, B rounded to bf16 (the fast path keeps them)", ab, 1, kBf16, "params"));
  }
  return t;
}

// The largest transient of one layer's backward (on top of what the layer keeps), by the code's order: the
// MLP backward (LoraMlpFunction: dh [N, I] and silu(gate) x up recomputed, dx and the incoming gradient) or
// the attention backward (flash-attention's dq, dk, dv and its fp32 dq accumulator).
std::vector<Term> backward_terms(const io::HfConfig& c, const RunSpec& s, double N) {
  const Shape m(c);
  std::vector<Term> mlp, attn;
  mlp.push_back(bytes_term("incoming gradient and dx", N, double(2 * m.H), kBf16, "tok"));
  mlp.push_back(
      bytes_term("MLP backward: d(silu(g) u) and silu(g) u recomputed", N, double(2 * m.I), kBf16, "tok"));
  attn.push_back(bytes_term("incoming gradient and dx", N, double(2 * m.H), kBf16, "tok"));
  attn.push_back(bytes_term("attention backward: dq, dk, dv", N, double(m.Q + 2 * m.K), kBf16, "tok"));
  attn.push_back(bytes_term("attention backward: fp32 dq accumulator", N, double(m.Q), kF32, "tok"));
  const double w = double(std::max(m.I * m.H, m.Q * m.H));
  if (s.finetune == Finetune::full)  // a weight gradient is made by a GEMM, then added into .grad
    mlp.push_back(bytes_term("weight-gradient GEMM output (largest projection)", w, 1, kBf16, "params"));
  std::vector<Term> unpack;
  if (s.finetune == Finetune::qlora) {
    // The MLP backward's dX: gate and up unpacked from NF4 and concatenated (after dh is freed).
    unpack.push_back(bytes_term("incoming gradient and dx", N, double(2 * m.H), kBf16, "tok"));
    unpack.push_back(
        bytes_term("gate, up unpacked from NF4 and concatenated", double(m.I * m.H), 4, kBf16, "params"));
  }
  const double a = sum(mlp), b = sum(attn), u = sum(unpack);
  return a >= b && a >= u ? mlp : b >= u ? attn : unpack;
}

struct MicroStats {
  double tokens = 0;   // token slots (padding included)
  double real = 0;     // real tokens
  double trained = 0;  // loss targets: the rows the head and the cross-entropy run on
  double pairs = 0;    // causal attention pairs: sum of n (n + 1) / 2 over the attention segments
  bool equal_segments = false;  // packed samples of one length dividing the row (ops::AttentionLayout)
};

MicroStats micro_stats(const data::MicroBatch& mb, const Samples& s, data::Packing packing) {
  MicroStats m;
  m.tokens = double(mb.padded_tokens());
  m.real = double(mb.tokens);
  m.trained = double(mb.trained);
  if (packing == data::Packing::packed) {
    int64_t first = -1;
    bool equal = !mb.samples.empty();
    for (int64_t id : mb.samples) {
      const double n = s.lengths[size_t(id)];
      m.pairs += n * (n + 1) / 2;
      if (first < 0) first = int64_t(n);
      equal = equal && int64_t(n) == first;
    }
    // One sample filling the row is a plain causal row already (flash-attention, as calibrated).
    m.equal_segments = equal && first > 0 && mb.samples.size() > 1 && mb.row_len % first == 0 &&
                       first * int64_t(mb.samples.size()) == mb.row_len;
  } else {
    const double n = double(mb.row_len);
    m.pairs = double(mb.rows) * n * (n + 1) / 2;
  }
  return m;
}

// Seconds of one micro-batch by kind of work (see Efficiency).
std::vector<Term> micro_time(const io::HfConfig& c, const RunSpec& s, const GpuSpec& g, const MicroStats& mb,
                             int64_t matmul_params) {
  const Shape m(c);
  const Efficiency& e = g.eff;
  const bool full = s.finetune == Finetune::full, ckpt = s.grad_ckpt != Ckpt::off;
  const double N = mb.tokens, bw = g.hbm_bytes_s, peak = g.peak_bf16;
  const double layer_mm = double(matmul_params - m.V * m.H);
  std::vector<Term> t;
  // GEMMs: forward 2 P, input gradient 2 P, weight gradient 2 P (full); checkpointing re-runs the layers'
  // forward (2 x the layers' share). The head runs on the loss targets only (Model::loss_from_hidden).
  const double k = full ? 6.0 : 4.0, head = double(m.V * m.H);
  const double gemm = (k * layer_mm + (ckpt ? 2.0 * layer_mm : 0.0)) * N + k * head * mb.trained;
  t.push_back({"GEMM (projections, lm_head)", gemm / (peak * e.gemm),
               fmt(gemm / N / 1e9) + " GFLOP/token at " + fmt(e.gemm * 100) + "% of peak"});
  // Attention: per causal pair and layer 4 Q FLOPs forward (QK^T, PV), 10 Q backward (5 GEMMs), 4 Q more to
  // recompute the forward under checkpointing.
  const double attn_flops = (ckpt ? 18.0 : 14.0) * mb.pairs * double(m.Q) * double(m.L);
  const double ed = m.D >= 128  ? e.attn_d128
                    : m.D <= 64 ? e.attn_d64
                                : e.attn_d64 + (e.attn_d128 - e.attn_d64) * double(m.D - 64) / 64.0;
  // Flash-attention runs closer to peak on longer samples: x (1 + attn_per_doubling x log2(T / 2048)) at the
  // micro-batch's pair-weighted sample length T = sum n^2 / sum n, within [0.5, attn_max_gain].
  const double t_eff = mb.tokens > 0 ? std::max(1.0, 2.0 * mb.pairs / mb.tokens) : 2048.0;
  const double dense = !mb.equal_segments ? 1.0
                       : m.D >= 128      ? e.attn_dense_d128
                       : m.D <= 64       ? e.attn_dense_d64
                                         : e.attn_dense_d64 + (e.attn_dense_d128 - e.attn_dense_d64) *
                                                                  double(m.D - 64) / 64.0;
  // The two gains were measured apart (equal 2048-token samples; single long samples): the larger, not their
  // product, until equal long samples are measured.
  const double ea = ed * std::max(dense, std::clamp(1.0 + e.attn_per_doubling * std::log2(t_eff / 2048.0), 0.5,
                                                    e.attn_max_gain));
  t.push_back({mb.equal_segments ? "attention (equal samples: SDPA)" : "attention (flash)", attn_flops / (peak * ea),
               fmt(attn_flops / 1e12) + " TFLOP at " + fmt(ea * 100) + "% of peak (samples ~" +
                   fmt(std::round(t_eff)) + " tokens)"});
  if (!full) {
    double elems = 0;
    for (model::Proj p : s.lora_targets) {
      auto [out, in] = proj_shape(c, p);
      elems += double(in + out);
    }
    elems *= double(m.L);
    // The PEFT path QLoRA runs today moves its inputs and products in fp32 through unfused ops: about 3x the
    // fast path's bytes (an assumption until measured).
    const double peft = s.finetune == Finetune::qlora && !kQloraFastPath ? 3.0 : 1.0;
    const double bytes = peft * e.lora_bytes * elems * N * (ckpt ? 4.0 / 3.0 : 1.0);
    t.push_back({"LoRA branch (bandwidth)", bytes / bw,
                 fmt(peft * e.lora_bytes) + " B x " + fmt(elems) + " (in+out) x tokens"});
  }
  // RMSNorm (2 x 5 H), residual adds (12 H), RoPE (4 (Q + K)), SwiGLU with the backward's recomputation
  // (11 I) element reads/writes per token and layer, bf16; a third more with checkpointing.
  const double fused = (22.0 * double(m.H) + 4.0 * double(m.Q + m.K) + 11.0 * double(m.I)) * kBf16 *
                       double(m.L) * N * (ckpt ? 4.0 / 3.0 : 1.0);
  t.push_back({"norms, RoPE, SwiGLU, adds (bandwidth)", fused * e.fused_factor / bw,
               fmt(fused / N) + " B/token x " + fmt(e.fused_factor)});
  if (m.qk_norm) {
    const double qk = 5.0 * double(m.Q + m.K) * kBf16 * double(m.L) * N * (ckpt ? 4.0 / 3.0 : 1.0);
    t.push_back({"qk-norm (bandwidth)", qk * e.small_norm_factor / bw,
                 fmt(qk / N) + " B/token x " + fmt(e.small_norm_factor)});
  }
  const double loss = 2.0 * kBf16 * double(m.V) * mb.trained;
  t.push_back({"cross-entropy over the logits (bandwidth)", loss * e.loss_factor / bw,
               fmt(2.0 * kBf16 * double(m.V)) + " B/target x " + fmt(e.loss_factor)});
  if (full) {
    // lm_head's fp32 gradient: each logits chunk's fp32 GEMM output added into it (read 2, write 1 x 4 B).
    const double chunks = std::ceil(mb.trained / double(std::max<int64_t>(1, kLossChunkLogits / m.V)));
    const double b = chunks * 3.0 * kF32 * head;
    t.push_back({"lm_head fp32 gradient sums per logits chunk (bandwidth)", b / bw,
                 fmt(chunks) + " chunks x 12 B x V x H"});
  }
  if (s.finetune == Finetune::qlora) {
    // The fast path unpacks each NF4 projection to bf16 in the forward and again in the backward (and in the
    // recomputation): read ~0.53 B, write 2 B per weight; q|k|v and gate|up are then concatenated (read and
    // write 2 B each); 7 unpack calls per layer and pass at a fixed cost each.
    const double passes = ckpt ? 3.0 : 2.0;
    double cat = 0;
    for (model::Proj p :
         {model::Proj::q, model::Proj::k, model::Proj::v, model::Proj::gate, model::Proj::up}) {
      auto [out, in] = proj_shape(c, p);
      cat += double(out * in) * double(m.L);
    }
    const double bytes = passes * (layer_mm * (0.53 + 2.0) + cat * 4.0);
    const double calls = passes * 7.0 * double(m.L);
    t.push_back({"NF4 unpacking (bandwidth + calls)", bytes / bw + calls * e.nf4_call_s,
                 fmt(bytes / 1e9) + " GB and " + fmt(calls) + " calls per micro-batch"});
  }
  if (s.grad_ckpt == Ckpt::offload) {
    const double b = 2.0 * N * double(m.H) * kBf16 * double(m.L);
    t.push_back({"offload copies (host <-> GPU)", b / (e.offload_gbs * 1e9),
                 fmt(b / 1e9) + " GB at " + fmt(e.offload_gbs) + " GB/s"});
  }
  const double subtotal = sum(t);
  t.push_back({"copies, small ops", subtotal * e.misc, fmt(e.misc * 100) + "% of the above"});
  const double layers = double(m.L) * (ckpt ? 4.0 / 3.0 : 1.0);
  t.push_back({"kernel launches, GPU idle (per layer)", layers * e.layer_s,
               fmt(e.layer_s * 1e3) + " ms x " + fmt(layers) + " layer passes"});
  return t;
}

}  // namespace

int64_t trainable_tensors(const io::HfConfig& c, const RunSpec& s) {
  if (s.finetune != Finetune::full) return 2 * int64_t(s.lora_targets.size()) * c.num_hidden_layers;
  const int64_t bias = (c.qkv_bias ? 3 : 0) + (c.o_bias ? 1 : 0) + (c.mlp_bias ? 3 : 0);
  return 2 + (c.tie_word_embeddings ? 0 : 1) + c.num_hidden_layers * (7 + 2 + (c.qk_norm ? 2 : 0) + bias);
}

Zero1Shape zero1_shape(int64_t numel, int world) {
  // train/zero1.cpp's layout (train/zero1_layout.h): sections from the start of the flat order, each split
  // into one equal run of whole norm chunks per rank.
  Zero1Shape z;
  if (world <= 1) {
    z.shard = z.padded = numel;
    return z;
  }
  const int64_t chunk = train::norm_chunk(numel), section = train::zero1_section(numel, chunk);
  for (int64_t b = 0; b < numel; b += section) {
    const int64_t run = train::zero1_run(std::min(section, numel - b), chunk, world);
    z.shard += run;
    z.padded += run * world;
    z.staging = std::max(z.staging, run * world);
  }
  return z;
}

double sum(const std::vector<Term>& terms) {
  double s = 0;
  for (const auto& t : terms) s += t.value;
  return s;
}

const char* finetune_name(Finetune f) {
  return f == Finetune::full ? "full" : f == Finetune::qlora ? "qlora" : "lora";
}
const char* ckpt_name(Ckpt c) { return c == Ckpt::on ? "on" : c == Ckpt::offload ? "offload" : "off"; }

std::pair<int64_t, int64_t> proj_shape(const io::HfConfig& c, model::Proj p) {
  switch (p) {
    case model::Proj::q:
      return {c.q_dim(), c.hidden_size};
    case model::Proj::k:
    case model::Proj::v:
      return {c.kv_dim(), c.hidden_size};
    case model::Proj::o:
      return {c.hidden_size, c.q_dim()};
    case model::Proj::gate:
    case model::Proj::up:
      return {c.intermediate_size, c.hidden_size};
    case model::Proj::down:
      return {c.hidden_size, c.intermediate_size};
  }
  return {0, 0};
}

ParamCounts count_params(const io::HfConfig& c) {
  ParamCounts n;
  const Shape m(c);
  n.embed = m.V * m.H;
  n.lm_head = m.tied ? 0 : m.V * m.H;
  n.norms = m.H + m.L * (2 * m.H + (m.qk_norm ? 2 * m.D : 0));
  int64_t per_layer_bias =
      (c.qkv_bias ? m.Q + 2 * m.K : 0) + (c.o_bias ? m.H : 0) + (c.mlp_bias ? 2 * m.I + m.H : 0);
  n.biases = m.L * per_layer_bias;
  for (model::Proj p : model::kAllProjs) {
    auto [out, in] = proj_shape(c, p);
    n.projections += m.L * out * in;
  }
  return n;
}

int64_t lora_params(const io::HfConfig& c, int64_t r, const std::vector<model::Proj>& targets) {
  int64_t n = 0;
  for (model::Proj p : targets) {
    auto [out, in] = proj_shape(c, p);
    n += r * (in + out);
  }
  return n * c.num_hidden_layers;
}

int64_t nf4_weight_bytes(int64_t numel) {
  const int64_t blocks = (numel + 63) / 64;
  return (numel + 1) / 2 + blocks + 16 * 4 + (blocks + 255) / 256 * 4 + 256 * 4;
}

double trainer_flops_per_token(const io::HfConfig& c, bool full) {
  const ParamCounts n = count_params(c);
  return (full ? 6.0 : 4.0) * double(c.vocab_size * c.hidden_size + n.projections);
}

Plan estimate(const io::HfConfig& c, const RunSpec& s, const Samples& samples,
              const std::optional<GpuSpec>& gpu) {
  HS_CHECK(s.world >= 1 && s.grad_accum >= 1 && s.tokens_per_batch > 0);
  Plan p;
  p.spec = s;
  p.gpu = gpu;
  p.model_type = c.model_type;
  p.layers = c.num_hidden_layers;
  const Shape m(c);
  const bool full = s.finetune == Finetune::full, nf4 = s.finetune == Finetune::qlora;
  const ParamCounts n = count_params(c);
  p.params = n.total();
  p.matmul_params = m.V * m.H + n.projections;
  p.flops_per_token = trainer_flops_per_token(c, full);
  p.trainable = full ? p.params : lora_params(c, s.lora_r, s.lora_targets);
  const double P = double(p.params), T = double(p.trainable);

  // ---- the batch plan, as the trainer builds it
  std::vector<int64_t> ids = samples.ids;
  if (ids.empty()) {
    ids.resize(samples.lengths.size());
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int64_t(i);
  }
  data::PlanOptions po;
  po.tokens_per_batch = s.tokens_per_batch;
  po.packing = s.packing;
  po.seed = s.seed;
  po.world_size = s.world;
  po.grad_accum = s.grad_accum;
  data::BatchPlan bp = data::BatchPlan::build(samples.lengths, samples.trained, ids, po);
  p.micro_batches = int64_t(bp.micro_batches().size());
  p.steps_per_epoch = bp.steps_per_epoch();
  p.total_steps = s.max_steps > 0
                      ? s.max_steps
                      : std::max<int64_t>(1, int64_t(std::ceil(s.epochs * double(p.steps_per_epoch))));
  p.padding = bp.padding_fraction();
  const data::MicroBatch* largest = nullptr;
  for (const auto& mb : bp.micro_batches())
    if (!largest || mb.padded_tokens() > largest->padded_tokens()) largest = &mb;
  p.largest_micro_tokens = largest ? largest->padded_tokens() : 0;
  const double N = double(p.largest_micro_tokens);

  // ---- memory: states
  Memory& mem = p.memory;
  const double nonproj = double(n.embed + n.lm_head + n.norms + n.biases);
  if (nf4) {
    double q = 0;
    for (model::Proj pr : model::kAllProjs) {
      auto [out, in] = proj_shape(c, pr);
      q += double(nf4_weight_bytes(out * in)) * double(m.L);
    }
    mem.states.push_back(
        {"weights: projections in NF4", q,
         fmt(double(n.projections)) + " params x ~0.53 B (codes, absmax, nested statistics)"});
    mem.states.push_back(
        bytes_term("weights: embeddings, norms, biases (bf16)", nonproj, 1, kBf16, "params"));
  } else {
    mem.states.push_back(bytes_term("weights (bf16)", P, 1, kBf16, "params"));
  }
  // ZeRO-1 (dist.shard_optimizer, full fine-tuning on several ranks; train/zero1.cpp): each rank keeps a
  // shard of the fp32 master, the reduced gradient and the AdamW moments, and one section's staging buffer.
  const bool zero = full && s.shard_optimizer && s.world > 1;
  // Without ZeRO-1 the trainer keeps no fp64 sum for one micro-batch per step on one rank (a sum of one term).
  const bool fp64 =
      (s.grad_sum == GradSum::fp64 || (s.grad_sum == GradSum::auto_ && p.trainable <= kFp64SumLimit)) &&
      (zero || s.world > 1 || s.grad_accum > 1);
  const Zero1Shape z = zero1_shape(p.trainable, zero ? s.world : 1);
  p.shard = zero ? z.shard : 0;
  const double S = double(z.shard), Tpad = double(z.padded);
  if (full) {
    mem.states.push_back(bytes_term("gradients of the weights (bf16 .grad)", P, 1, kBf16, "params"));
    if (zero)
      mem.states.push_back(bytes_term("fp32 master: this rank's shard (ZeRO-1)", S, 1, kF32, "params"));
    else
      mem.states.push_back(bytes_term("fp32 master copy", P, 1, kF32, "params"));
  } else {
    mem.states.push_back(bytes_term("LoRA A, B (fp32 masters)", T, 1, kF32, "params"));
  }
  // ZeRO-1 keeps no flat fp32 gradient of all parameters: the tensors' gradients are staged a section at a time.
  if (zero) {
    mem.states.push_back(bytes_term("reduced gradient: this rank's shard (fp32)", S, 1, kF32, "params"));
    mem.states.push_back(
        bytes_term("staging buffer (one section, all ranks' runs, fp32)", double(z.staging), 1, kF32, "values"));
  } else {
    mem.states.push_back(bytes_term("flat fp32 gradient", T, 1, kF32, "params"));
  }
  mem.states.push_back(
      bytes_term(zero ? "AdamW moments: this rank's shard (2 x fp32)" : "AdamW moments (2 x fp32)",
                 zero ? S : T, 2, kF32, "params"));
  if (fp64)
    mem.states.push_back(
        bytes_term("fp64 gradient sum (train.grad_sum)", zero ? Tpad : T, 1, kF64, "params"));
  const double rope_pos = double(
      std::max<int64_t>(std::min<int64_t>(c.max_position_embeddings, 4096), largest ? largest->row_len : 0));
  mem.states.push_back(
      bytes_term("RoPE cos/sin tables (fp32)", rope_pos, double(2 * m.D), kF32, "positions"));

  // ---- memory: activations
  mem.layer = layer_terms(c, s, N);
  const double layer = sum(mem.layer);
  const std::string L = std::to_string(m.L);
  switch (s.grad_ckpt) {
    case Ckpt::off:
      mem.kept.push_back({"saved activations: " + L + " layers x one layer", layer * double(m.L),
                          L + " x " + fmt(layer / kGiB * 1024) + " MiB"});
      break;
    case Ckpt::on:
      mem.kept.push_back(bytes_term("layer inputs kept by checkpointing (" + L + " layers)", N,
                                    double(m.H * m.L), kBf16, "tok"));
      break;
    case Ckpt::offload:
      mem.kept.push_back({"layer inputs: in host memory (offload)", 0, "0 B on the GPU"});
      break;
  }
  mem.kept.push_back(bytes_term("final RMSNorm input", N, double(m.H), kBf16, "tok"));
  // The loss stage (Model::loss_from_hidden + LinearCrossEntropyFunction): the normed hidden states, the
  // selected target rows, their gradient (made in the forward), one chunk of bf16 logits (gradient written
  // over it); full fine-tuning also makes lm_head's fp32 gradient and an fp32 GEMM output per chunk.
  const double targets = largest ? double(std::max<int64_t>(1, largest->trained)) : 1.0;
  const double chunk_rows =
      std::min(targets, double(std::max<int64_t>(1, kLossChunkLogits / std::max<int64_t>(1, m.V))));
  mem.loss.push_back(bytes_term("final-norm output", N, double(m.H), kBf16, "tok"));
  mem.loss.push_back(
      bytes_term("target rows and their gradient", targets, double(2 * m.H), kBf16, "targets"));
  mem.loss.push_back(bytes_term("logits chunk (bf16, <= 2^27)", chunk_rows, double(m.V), kBf16, "rows"));
  mem.loss.push_back(bytes_term("targets, mask, per-row loss", N, 1, 8 + 4 + 1, "tok"));
  std::vector<Term> head_grad;
  if (full) {
    head_grad.push_back(
        bytes_term("lm_head gradient (fp32, made in the forward)", double(m.V * m.H), 1, kF32, "params"));
    mem.loss.push_back(head_grad.back());
    mem.loss.push_back(
        bytes_term("lm_head gradient GEMM output per chunk (fp32)", double(m.V * m.H), 1, kF32, "params"));
  }
  // The backward of the last layer: the loss's saved gradient, the layer recomputed (checkpointing, with its
  // input back from the host for offload), the layer's backward transients.
  mem.backward.push_back(
      bytes_term("hidden-state gradient saved by the loss", targets, double(m.H), kBf16, "targets"));
  if (full) {
    // The loss's backward scales lm_head's saved fp32 gradient (an fp32 product) and rounds it to bf16.
    mem.loss_backward.push_back(
        bytes_term("hidden-state gradient saved by the loss", targets, double(m.H), kBf16, "targets"));
    for (const auto& t : head_grad) mem.loss_backward.push_back(t);
    mem.loss_backward.push_back(
        bytes_term("lm_head gradient x the loss scale (fp32)", double(m.V * m.H), 1, kF32, "params"));
    mem.loss_backward.push_back(
        bytes_term("lm_head gradient rounded to bf16", double(m.V * m.H), 1, kBf16, "params"));
  }
  if (s.grad_ckpt != Ckpt::off) {
    mem.backward.push_back(
        {"one layer recomputed (its saved activations)", layer, fmt(layer / kGiB * 1024) + " MiB"});
    if (s.grad_ckpt == Ckpt::offload)
      mem.backward.push_back(
          bytes_term("layer input copied back from the host", N, double(m.H), kBf16, "tok"));
  }
  for (auto& t : backward_terms(c, s, N)) mem.backward.push_back(t);
  // AdamW::step: sqrt(v) and its quotient (fp32) before the update, a chunk of at most
  // RunSpec::adamw_step_chunk values at a time (train::AdamW::kStepChunk; this library does not link torch).
  const double step_values = s.adamw_step_chunk > 0 ? std::min(zero ? S : T, double(s.adamw_step_chunk))
                                                    : (zero ? S : T);
  mem.optimizer.push_back(bytes_term("AdamW temporaries (sqrt(v), denominator; a chunk at a time)", step_values,
                                     2, kF32, "params"));
  if (full && !zero) {
    // Start-up: FlatParams makes the whole fp32 master and gradient next to the weights. (ZeRO-1's FlatParams
    // makes no flat buffers: Zero1 makes the shard-sized state of `states` directly.)
    mem.setup.push_back(bytes_term("fp32 master, whole", T, 1, kF32, "params"));
    mem.setup.push_back(bytes_term("flat fp32 gradient", T, 1, kF32, "params"));
  }

  const double states = sum(mem.states), kept = sum(mem.kept);
  const double at_loss = states + kept + sum(mem.loss);
  const double in_backward = states + kept + sum(mem.backward);
  const double at_loss_backward = states + kept + sum(mem.loss_backward);
  const double at_step = states + sum(mem.optimizer);
  // Start-up holds the weights and the setup terms only (no .grad yet).
  const double at_setup = full ? (nf4 ? 0 : 2.0 * P) + sum(mem.setup) : 0;
  mem.peak = std::max({at_loss, in_backward, at_loss_backward, at_step, at_setup});
  mem.peak_phase = mem.peak == at_setup           ? "start-up (fp32 master and gradient made)"
                   : mem.peak == at_step          ? "optimizer step"
                   : mem.peak == at_loss          ? "end of forward (loss)"
                   : mem.peak == at_loss_backward ? "loss backward"
                                                  : "backward";
  mem.overhead.push_back({"CUDA context, cuBLAS workspaces", kContextBytes, "~0.6 GiB"});
  mem.overhead.push_back({"caching-allocator slack", mem.peak * kSlack, fmt(kSlack * 100) + "% of the peak"});
  if (s.world > 1) mem.overhead.push_back({"NCCL buffers", 0.25 * kGiB, "~0.25 GiB"});
  mem.needed = mem.peak + sum(mem.overhead);
  if (gpu) {
    p.fits_known = true;
    p.fits = mem.needed <= gpu->memory_bytes;
  }

  // ---- speed
  if (gpu && !gpu->memory_only && gpu->peak_bf16 > 0 && gpu->hbm_bytes_s > 0) {
    Speed& sp = p.speed;
    sp.known = true;
    sp.calibrated = gpu->eff.calibrated;
    if (largest)
      sp.micro = micro_time(c, s, *gpu, micro_stats(*largest, samples, s.packing), p.matmul_params);
    // Every micro-batch's time, then per step the slowest rank, over the first epoch.
    std::vector<double> t_mb(bp.micro_batches().size());
    for (size_t i = 0; i < t_mb.size(); ++i)
      t_mb[i] = sum(
          micro_time(c, s, *gpu, micro_stats(bp.micro_batches()[i], samples, s.packing), p.matmul_params));
    // Optimizer: AdamW reads p, g, m, v and writes p, m, v (fp32) plus the gradient norm, clipping and the
    // fp64 sum's copy. Full fine-tuning: the measured per-step cost in bytes per parameter, of which the
    // gathering of the bf16 gradients, the refresh of the bf16 weights and the zeroing (18 B) run over every
    // parameter and the rest (AdamW, norm, clipping) over this rank's shard under ZeRO-1.
    constexpr double kWholeBytes = 18;
    const double opt_bytes = full ? (zero ? P * kWholeBytes + S * (gpu->eff.full_step_bytes - kWholeBytes)
                                          : P * gpu->eff.full_step_bytes)
                                  : T * (7 * kF32 + 2 * kF32 + (fp64 ? 2 * kF64 * double(s.grad_accum) : 0));
    sp.optimizer_s = opt_bytes / gpu->hbm_bytes_s;
    if (s.world > 1) {
      // NCCL ring over the bus bandwidth: one all-reduce of the flat gradient (fp64 when summed in fp64),
      // 2 (N - 1) / N of its bytes; ZeRO-1: a reduce-scatter of the gradient staged in fp32 (from the fp64 sum
      // too) and an all-gather of the bf16 weights, (N - 1) / N of each.
      const double f = double(s.world - 1) / double(s.world);
      if (zero) {
        sp.allreduce_bytes = Tpad * kF32 + Tpad * kBf16;
        sp.allreduce_s = f * sp.allreduce_bytes / gpu->allreduce_bus_bytes_s;
      } else {
        sp.allreduce_bytes = T * (fp64 ? kF64 : kF32);
        sp.allreduce_s = 2.0 * f * sp.allreduce_bytes / gpu->allreduce_bus_bytes_s;
        if (s.bucket_mb > 0) {
          // dist.bucket_mb: buckets overlap part of the all-reduce with the backward; their gradient hooks
          // cost a fixed time per trainable tensor (train/grad_buckets.cpp).
          sp.allreduce_s = sp.allreduce_s * (1.0 - gpu->eff.bucket_overlap) +
                           double(trainable_tensors(c, s)) * gpu->eff.bucket_tensor_s;
        }
      }
    }
    double total_s = 0, total_tokens = 0;
    for (int64_t st = 0; st < p.steps_per_epoch; ++st) {
      double slowest = 0;
      for (int r = 0; r < s.world; ++r) {
        double t = 0;
        for (int64_t i : bp.step_batches(st, r)) {
          t += t_mb[size_t(i)];
          total_tokens += double(bp.micro_batches()[size_t(i)].tokens);
        }
        slowest = std::max(slowest, t);
      }
      total_s += slowest + sp.allreduce_s + sp.optimizer_s;
    }
    sp.step_s = total_s / double(std::max<int64_t>(1, p.steps_per_epoch));
    sp.tokens_per_s = total_s > 0 ? total_tokens / total_s : 0;
    p.tokens_per_step = total_tokens / double(std::max<int64_t>(1, p.steps_per_epoch));
    sp.mfu = p.flops_per_token * sp.tokens_per_s / (gpu->peak_bf16 * double(s.world));
    p.duration_s = sp.step_s * double(p.total_steps);
  } else {
    double toks = 0;
    for (const auto& mb : bp.micro_batches()) toks += double(mb.tokens);
    p.tokens_per_step = toks / double(std::max<int64_t>(1, p.steps_per_epoch));
  }
  return p;
}

}  // namespace hs::plan
