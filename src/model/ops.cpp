// Reference implementations of the hot ops (ATen, any device). Each mirrors transformers' op order so
// float32 results agree to rounding; see ops.h.
#include "model/ops.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "core/error.h"
#include "model/device_copy.h"

namespace hs::model::ops {

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  return rms_norm_has_kernel(x, weight) ? rms_norm_kernel(x, weight, eps) : rms_norm_reference(x, weight, eps);
}

at::Tensor rms_norm_reference(const at::Tensor& x, const at::Tensor& weight, double eps) {
  auto input_dtype = x.scalar_type();
  at::Tensor h = x.to(at::kFloat);
  at::Tensor variance = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * at::rsqrt(variance + eps);
  return weight * h.to(input_dtype);
}

at::Tensor rope_inv_freq(const io::HfConfig& c) {
  const int64_t dim = c.head_dim;
  // 1 / base^(arange(0, dim, 2) / dim), in float32 as transformers computes it.
  at::Tensor exponent = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / double(dim);
  at::Tensor inv_freq = at::pow(c.rope_theta, exponent).reciprocal();
  switch (c.rope.type) {
    case io::RopeType::standard:
      return inv_freq;
    case io::RopeType::linear:
      return inv_freq / c.rope.factor;
    case io::RopeType::llama3: {
      const double factor = c.rope.factor, low = c.rope.low_freq_factor, high = c.rope.high_freq_factor;
      const double old_len = double(c.rope.original_max_position_embeddings);
      const double low_freq_wavelen = old_len / low, high_freq_wavelen = old_len / high;
      at::Tensor wavelen = inv_freq.reciprocal() * (2 * M_PI);
      at::Tensor llama = at::where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq);
      at::Tensor smooth = (wavelen.reciprocal() * old_len - low) / (high - low);
      at::Tensor smoothed = (1 - smooth) * llama / factor + smooth * llama;
      at::Tensor medium =
          at::logical_not(wavelen < high_freq_wavelen) * at::logical_not(wavelen > low_freq_wavelen);
      return at::where(medium, smoothed, llama);
    }
  }
  return inv_freq;
}

RopeTable rope_table(const io::HfConfig& config, int64_t positions, at::Device device) {
  HS_CHECK(positions > 0);
  at::Tensor inv_freq = rope_inv_freq(config);
  at::Tensor pos = at::arange(positions, at::kLong).to(at::kFloat);
  at::Tensor freqs = pos.unsqueeze(-1) * inv_freq.unsqueeze(0);  // [P, D/2]
  at::Tensor emb = at::cat({freqs, freqs}, -1);                  // [P, D]
  return {emb.cos().to(device), emb.sin().to(device)};
}

at::Tensor rope(const at::Tensor& x, const RopeTable& table, const at::Tensor& position_ids) {
  return rope_has_kernel(x, table, position_ids) ? rope_kernel(x, table, position_ids)
                                                 : rope_reference(x, table, position_ids);
}

at::Tensor rope_reference(const at::Tensor& x, const RopeTable& table, const at::Tensor& position_ids) {
  const int64_t B = position_ids.size(0), T = position_ids.size(1), D = x.size(-1);
  at::Tensor flat = position_ids.reshape({-1});
  at::Tensor cos = table.cos.index_select(0, flat).view({B, 1, T, D}).to(x.scalar_type());
  at::Tensor sin = table.sin.index_select(0, flat).view({B, 1, T, D}).to(x.scalar_type());
  at::Tensor x1 = x.slice(-1, 0, D / 2), x2 = x.slice(-1, D / 2, D);
  at::Tensor rotated = at::cat({-x2, x1}, -1);
  return x * cos + rotated * sin;
}

at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up) {
  return swiglu_has_kernel(gate, up) ? swiglu_kernel(gate, up) : swiglu_reference(gate, up);
}

at::Tensor swiglu_reference(const at::Tensor& gate, const at::Tensor& up) { return at::silu(gate) * up; }

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return bias.defined() ? at::linear(x, weight, bias) : at::linear(x, weight);
}

at::Tensor lora_delta(const at::Tensor& x, const at::Tensor& a, const at::Tensor& b, double scaling,
                      double dropout_p, bool training) {
  at::Tensor h = (training && dropout_p > 0) ? at::dropout(x, dropout_p, /*train=*/true) : x;
  if (h.scalar_type() != a.scalar_type()) h = h.to(a.scalar_type());  // PEFT's _cast_input_dtype
  at::Tensor bb = b.scalar_type() == a.scalar_type() ? b : b.to(a.scalar_type());
  return at::linear(at::linear(h, a), bb) * scaling;
}

at::Tensor lora_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                       const at::Tensor& a, const at::Tensor& b, double scaling, double dropout_p,
                       bool training) {
  if (lora_linear_has_fast_path(x, weight, a, b, dropout_p, training))
    return lora_linear_fast(x, weight, bias, a, b, scaling);
  return lora_linear_reference(x, weight, bias, a, b, scaling, dropout_p, training);
}

at::Tensor lora_linear_reference(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                 const at::Tensor& a, const at::Tensor& b, double scaling, double dropout_p,
                                 bool training) {
  at::Tensor result = linear(x, weight, bias);
  at::Tensor sum = result + lora_delta(x, a, b, scaling, dropout_p, training);
  return sum.scalar_type() == result.scalar_type() ? sum : sum.to(result.scalar_type());
}

namespace {
// The attention switches, read once: HS_ATTENTION_SEGMENTS=varlen turns the equal-samples path off,
// HS_ATTENTION_PADDED=1 turns padding near-equal samples on.
bool env_is(const char* name, const char* value) {
  const char* e = std::getenv(name);
  return e != nullptr && std::string(e) == value;
}
bool segments_enabled() {
  static const bool on = !env_is("HS_ATTENTION_SEGMENTS", "varlen");
  return on;
}
bool padded_enabled() {
  static const bool on = env_is("HS_ATTENTION_PADDED", "1");
  return on;
}
}  // namespace

bool pad_samples(AttentionLayout& layout, double max_pairs) {
  const std::vector<int64_t>& b = layout.bounds;
  if (b.size() < 3 || layout.segment_len > 0) return false;
  int64_t rows = 0, len = 0;
  double real = 0;
  for (size_t i = 0; i + 1 < b.size(); ++i) {
    const int64_t n = b[i + 1] - b[i];
    if (n == 0) continue;
    ++rows;
    len = std::max(len, n);
    real += double(n) * double(n + 1) / 2;
  }
  if (rows < 2 || double(rows) * double(len) * double(len + 1) / 2 > max_pairs * real) return false;
  std::vector<int64_t> index(size_t(b.back() - b.front()));
  int64_t row = 0;
  for (size_t i = 0; i + 1 < b.size(); ++i) {
    if (b[i + 1] == b[i]) continue;
    for (int64_t t = b[i]; t < b[i + 1]; ++t) index[size_t(t - b.front())] = row * len + (t - b[i]);
    ++row;
  }
  const at::Device device = layout.cu_seqlens.defined() ? layout.cu_seqlens.device() : at::Device(at::kCPU);
  layout.pad_index = to_device(at::tensor(index, at::kLong), device);
  layout.pad_rows = rows;
  layout.pad_len = len;
  return true;
}

AttentionLayout attention_layout(const at::Tensor& cu_seqlens, int64_t batch, int64_t seq_len,
                                 at::Device device) {
  AttentionLayout layout;
  if (!cu_seqlens.defined()) {
    layout.max_seqlen = seq_len;
    return layout;
  }
  HS_CHECK(cu_seqlens.dim() == 1 && cu_seqlens.numel() >= 2, "cu_seqlens must be [n+1]");
  at::Tensor cu = cu_seqlens.to(at::kCPU, at::kLong).contiguous();
  const int64_t* p = cu.data_ptr<int64_t>();
  const int64_t n = cu.numel(), total = batch * seq_len;
  if (p[0] != 0 || p[n - 1] != total)
    throw Error(
        str("cu_seqlens must run from 0 to batch*seq_len = ", total, ", got ", p[0], " .. ", p[n - 1]))
        .at("attention_layout");
  bool one_per_row = true, equal = true;
  int64_t max_len = 0, first_len = 0;
  for (int64_t i = 0; i + 1 < n; ++i) {
    const int64_t begin = p[i], end = p[i + 1];
    if (end < begin) throw Error(str("cu_seqlens decreases at index ", i + 1)).at("attention_layout");
    if (end == begin) continue;
    if (begin / seq_len != (end - 1) / seq_len)
      throw Error(
          str("sequence ", i, " [", begin, ", ", end, ") crosses a row boundary (row length ", seq_len, ")"))
          .at("attention_layout");
    if (begin % seq_len != 0 || end - begin != seq_len) one_per_row = false;
    if (first_len == 0) first_len = end - begin;
    // Segments follow one another from 0 to B*T, so equal lengths L put every start at a multiple of L.
    if (end - begin != first_len) equal = false;
    max_len = std::max(max_len, end - begin);
  }
  layout.cu_seqlens = to_device(cu_seqlens.to(at::kInt), device);  // no host sync (device_copy.h)
  layout.max_seqlen = max_len;
  if (one_per_row) return layout;  // plain causal rows
  layout.bounds.assign(p, p + n);
  if (equal && first_len > 0 && seq_len % first_len == 0)
    layout.segment_len = first_len;
  else if (device.is_cuda() && padded_enabled())
    pad_samples(layout, 1.25);
  return layout;
}

namespace {

// Packed rows, one causal SDPA per sample (CPU, and CUDA in fp32 where flash-attention does not run).
at::Tensor attention_per_sample(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                const std::vector<int64_t>& bounds, bool gqa) {
  const int64_t B = q.size(0), T = q.size(2);
  std::vector<at::Tensor> rows;
  for (int64_t r = 0; r < B; ++r) {
    std::vector<at::Tensor> parts;
    for (size_t i = 0; i + 1 < bounds.size(); ++i) {
      const int64_t begin = bounds[i], end = bounds[i + 1];
      if (end <= r * T || begin >= (r + 1) * T || end == begin) continue;
      const int64_t s = begin - r * T, len = end - begin;
      auto sl = [&](const at::Tensor& t) { return t.narrow(0, r, 1).narrow(2, s, len); };
      parts.push_back(
          at::scaled_dot_product_attention(sl(q), sl(k), sl(v), {}, 0.0, true, std::nullopt, gqa));
    }
    rows.push_back(parts.size() == 1 ? parts[0] : at::cat(parts, 2));
  }
  return rows.size() == 1 ? rows[0] : at::cat(rows, 0);
}

// Packed rows on CUDA in bf16/fp16: flash-attention varlen over the flattened tokens (differentiable).
at::Tensor attention_varlen(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const AttentionLayout& layout) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), KV = k.size(1);
  auto flat = [&](const at::Tensor& t, int64_t heads) {
    return t.transpose(1, 2).reshape({B * T, heads, D});
  };
  auto out =
      at::_flash_attention_forward(flat(q, H), flat(k, KV), flat(v, KV), layout.cu_seqlens, layout.cu_seqlens,
                                   layout.max_seqlen, layout.max_seqlen, 0.0, /*is_causal=*/true,
                                   /*return_debug_mask=*/false);
  return std::get<0>(out).view({B, T, H, D}).transpose(1, 2);
}

// Packed rows whose samples all have length L and start at multiples of L: B*T/L plain causal rows of L
// (views when the [B, T, H, D] buffers under q, k, v allow it), one SDPA call; the result as [B, H, T, D].
at::Tensor attention_segments(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t L,
                              bool gqa) {
  const int64_t B = q.size(0), T = q.size(2), D = q.size(3), R = B * T / L;
  auto rows = [&](const at::Tensor& t) { return t.transpose(1, 2).reshape({R, L, t.size(1), D}).transpose(1, 2); };
  const at::Tensor o = at::scaled_dot_product_attention(rows(q), rows(k), rows(v), {}, 0.0, true, std::nullopt, gqa);
  return o.transpose(1, 2).reshape({B, T, q.size(1), D}).transpose(1, 2);
}

// Packed samples padded at their ends to one length (pad_samples): one SDPA call over [pad_rows, H, pad_len, D]
// built by index_copy (its backward gathers the gradient back), the real tokens' outputs gathered back.
at::Tensor attention_padded(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const AttentionLayout& layout, bool gqa) {
  const int64_t B = q.size(0), T = q.size(2), D = q.size(3), N = B * T, S = layout.pad_rows, L = layout.pad_len;
  HS_CHECK(layout.pad_index.device() == q.device(), "padded attention layout built for ",
           layout.pad_index.device().str(), ", tensors on ", q.device().str());
  auto pad = [&](const at::Tensor& t) {
    const int64_t h = t.size(1);
    at::Tensor out = at::zeros({S * L, h, D}, t.options());
    out.index_copy_(0, layout.pad_index, t.transpose(1, 2).reshape({N, h, D}));
    return out.view({S, L, h, D}).transpose(1, 2);
  };
  const at::Tensor o = at::scaled_dot_product_attention(pad(q), pad(k), pad(v), {}, 0.0, true, std::nullopt, gqa);
  return o.transpose(1, 2).reshape({S * L, q.size(1), D}).index_select(0, layout.pad_index)
      .view({B, T, q.size(1), D})
      .transpose(1, 2);
}

}  // namespace

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const AttentionLayout& layout) {
  const bool gqa = q.size(1) != k.size(1);
  const int64_t T = q.size(2), S = k.size(2);
  if (!layout.bounds.empty()) {
    HS_CHECK(T == S, "packed rows need as many queries as keys");
    if (q.is_cuda() && layout.segment_len > 0 && T % layout.segment_len == 0 && segments_enabled())
      return attention_segments(q, k, v, layout.segment_len, gqa);
    if (layout.pad_rows > 0) return attention_padded(q, k, v, layout, gqa);
    const bool half = q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kHalf;
    if (q.is_cuda() && half && q.size(3) % 8 == 0 && q.size(3) <= 256)
      return attention_varlen(q, k, v, layout);
    return attention_per_sample(q, k, v, layout.bounds, gqa);
  }
  if (!layout.causal || T == 1)
    return at::scaled_dot_product_attention(q, k, v, {}, 0.0, false, std::nullopt, gqa);
  if (T == S) return at::scaled_dot_product_attention(q, k, v, {}, 0.0, true, std::nullopt, gqa);
  HS_CHECK(S > T, "more queries than keys");
  // Decoding a chunk after a cached prefix: query t sits at absolute position S - T + t.
  at::Tensor mask = at::ones({T, S}, at::TensorOptions().dtype(at::kBool).device(q.device())).tril(S - T);
  return at::scaled_dot_product_attention(q, k, v, mask, 0.0, false, std::nullopt, gqa);
}

LossSum cross_entropy_sum(const at::Tensor& logits, const at::Tensor& targets) {
  HS_CHECK(logits.dim() == 2 && targets.dim() == 1 && logits.size(0) == targets.size(0));
  LossSum out;
  out.count = targets.size(0);
  if (out.count == 0) {
    out.sum = (logits.sum() * 0).to(at::kFloat);  // keeps the graph connected
    return out;
  }
  at::Tensor lsm = at::log_softmax(logits.to(at::kFloat), -1);
  out.sum = at::nll_loss(lsm, targets.to(at::kLong), {}, at::Reduction::Sum);
  return out;
}

LossSum linear_cross_entropy(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets) {
  HS_CHECK(hidden.dim() == 2 && weight.dim() == 2 && targets.dim() == 1 && hidden.size(0) == targets.size(0) &&
           hidden.size(1) == weight.size(1));
  constexpr int64_t kEvalChunk = 4096;
  const int64_t n = targets.size(0);
  if (n > 0 && linear_cross_entropy_has_fast_path(hidden, weight))
    return linear_cross_entropy_fast(hidden, weight, targets);
  if (at::GradMode::is_enabled() || n <= kEvalChunk) return cross_entropy_sum(ops::linear(hidden, weight, at::Tensor()), targets);
  double sum = 0;
  for (int64_t b = 0; b < n; b += kEvalChunk) {
    const int64_t e = std::min(n, b + kEvalChunk);
    at::Tensor logits = ops::linear(hidden.slice(0, b, e), weight, at::Tensor());
    sum += cross_entropy_sum(logits, targets.slice(0, b, e)).sum.item<double>();
  }
  LossSum out;
  out.sum = at::scalar_tensor(sum, at::TensorOptions().dtype(at::kFloat).device(hidden.device()));
  out.count = n;
  return out;
}

}  // namespace hs::model::ops
