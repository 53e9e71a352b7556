// The fused SwiGLU and RoPE kernels (kernels/swiglu.h, kernels/rope.h), forward and backward, in float32 and
// bf16, against two oracles computed from the same inputs:
//  - float64 on the CPU (autograd for the backward), with per-element bounds derived from the kernels'
//  rounding
//    points: each bf16 rounding costs at most u = 2^-8 relative, so two roundings in a product chain stay
//    within (2u + u^2)|exact| and a rounded sum of two rounded products within (2u + u^2)(|A| + |B|); float32
//    uses u = 2^-24 plus the float32 error of silu/sigmoid (a few ulps, absolute near silu'(g) = 0);
//  - HF transformers' formula written with ATen ops in the same dtype on the GPU (under ATen autograd for the
//    backward): RoPE must match bit for bit in both dtypes (the same correctly rounded ops in the same
//    order). SwiGLU calls expf, whose last bit depends on the math library: in bf16 it must be within 1 ulp
//    everywhere and differ in at most 0.1% of elements (pooled over the cases; the measured count is
//    printed); in float32 a 1-ulp expf difference moves silu by a few ulps and silu' by many near its zero,
//    so float32 is held to twice the float64 bound instead (both sides are within it), its ulp statistics
//    printed.
// Layouts: gate/up as separate tensors and as the two halves of one [rows, 2*cols] tensor, padded row strides
// (scalar path), sizes not multiples of 8, more rows than one grid dimension holds, in-place calls, and RoPE
// at position 0 and at the table's last row. Outputs start as NaN so unwritten elements fail; padding must
// stay NaN.
#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "kernels/rms_norm.h"  // error_string()
#include "kernels/rope.h"
#include "kernels/swiglu.h"
#include "support/test_support.h"

namespace {

namespace k = hs::kernels;

#define REQUIRE_GPU() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible; GPU kernel test skipped"

k::DType kdtype(at::ScalarType t) { return t == at::kBFloat16 ? k::DType::bf16 : k::DType::f32; }
const char* name(at::ScalarType t) { return t == at::kBFloat16 ? "bf16" : "f32"; }
// Unit roundoff of the dtype: half an ulp, relative.
double unit_roundoff(at::ScalarType t) { return t == at::kBFloat16 ? 1.0 / 256 : 1.0 / 16777216; }

// Distance in ulps between two tensors of the same floating dtype (+0 and -0 are 0 apart): the bit patterns
// mapped to integers that are ordered like the values.
at::Tensor ulp_distance(const at::Tensor& a, const at::Tensor& b) {
  auto ordered = [](const at::Tensor& t) {
    const bool bf = t.scalar_type() == at::kBFloat16;
    at::Tensor bits = t.contiguous().cpu().view(bf ? at::kShort : at::kInt).to(at::kLong);
    const int64_t sign = bf ? 32768 : 2147483648LL;
    return at::where(bits < 0, -(bits + sign), bits);
  };
  return (ordered(a) - ordered(b)).abs();
}

struct Agreement {
  int64_t max_ulps = 0;
  int64_t differing = 0, elements = 0;
  double mismatch_fraction() const { return elements == 0 ? 0.0 : double(differing) / double(elements); }
};
Agreement agreement(const at::Tensor& ours, const at::Tensor& ref) {
  at::Tensor d = ulp_distance(ours, ref);
  return {d.max().item<int64_t>(), (d > 0).sum().item<int64_t>(), d.numel()};
}
// Pools agreements over several cases (the 0.1% bound is on the pooled fraction: one differing element in a
// 7-element case says nothing).
void pool(Agreement& total, const Agreement& a) {
  total.max_ulps = std::max(total.max_ulps, a.max_ulps);
  total.differing += a.differing;
  total.elements += a.elements;
}

// Number of elements with |ours - ref| > tol (all compared in float64 on the CPU); NaN in ours counts.
int64_t count_outside(const at::Tensor& ours, const at::Tensor& ref, const at::Tensor& tol) {
  at::Tensor o = ours.to(at::kCPU, at::kDouble), r = ref.to(at::kCPU, at::kDouble);
  return (~((o - r).abs() <= tol)).sum().item<int64_t>();
}

bool any_nan(const at::Tensor& t) { return t.isnan().any().item<bool>(); }

// ---------------------------------------------------------------------------------------------------------
// SwiGLU

// HF LlamaMLP: act_fn(gate_proj(x)) * up_proj(x) with act_fn = SiLU, in the activation dtype.
at::Tensor hf_swiglu(const at::Tensor& g, const at::Tensor& u) { return at::silu(g) * u; }

enum class GuLayout { separate, halves };

struct SwigluCase {
  int64_t rows, cols;
  GuLayout layout;
  int64_t
      pad_out;  // extra elements per output row (h, dg/du buffers); makes the vector path impossible in bf16
  bool in_place;  // h written over g (forward); dg, du written over g, u (backward)
};
std::string describe(const SwigluCase& c, at::ScalarType t) {
  return std::string(name(t)) + " " + std::to_string(c.rows) + "x" + std::to_string(c.cols) +
         (c.layout == GuLayout::halves ? " halves" : " separate") + " pad " + std::to_string(c.pad_out) +
         (c.in_place ? " in-place" : "");
}

// g, u as views of the device buffer(s) for the layout; ld is their shared row stride.
struct GateUp {
  at::Tensor g, u;
  int64_t ld;
};
GateUp make_gate_up(const SwigluCase& c, at::ScalarType t) {
  auto opts = at::TensorOptions().dtype(t).device(at::kCUDA);
  if (c.layout == GuLayout::halves) {
    at::Tensor gu = (at::randn({c.rows, 2 * c.cols}) * 3).to(opts);
    return {gu.slice(1, 0, c.cols), gu.slice(1, c.cols, 2 * c.cols), 2 * c.cols};
  }
  return {(at::randn({c.rows, c.cols}) * 3).to(opts), (at::randn({c.rows, c.cols}) * 3).to(opts), c.cols};
}

const std::vector<SwigluCase>& swiglu_cases() {
  static const std::vector<SwigluCase> cases = {
      {1, 7, GuLayout::separate, 0, false},      // below one vector: scalar tail only
      {33, 1000, GuLayout::halves, 0, false},    // vector body, 1000 = 125 * 8
      {17, 4101, GuLayout::separate, 0, false},  // vector body + 5-element tail
      {5, 13, GuLayout::halves, 0, false},       // u = g + 13 is not 16-byte aligned: scalar path
      {9, 256, GuLayout::halves, 3, false},      // padded output rows: scalar path in bf16
      {65, 8192, GuLayout::halves, 0, false},    // Llama-3.2-1B intermediate width
      {70000, 8, GuLayout::halves, 0, false},    // more rows than grid.y (65535): the row loop
      {65, 2048, GuLayout::halves, 0, true},     // in place
      {3, 21, GuLayout::separate, 0, true},      // in place, scalar path
  };
  return cases;
}

TEST(CudaKernelsFused, SwigluForwardMatchesFloat64AndHfFormula) {
  REQUIRE_GPU();
  for (auto t : {at::kFloat, at::kBFloat16}) {
    Agreement all;
    for (const SwigluCase& c : swiglu_cases()) {
      SCOPED_TRACE(describe(c, t));
      GateUp gu = make_gate_up(c, t);
      const at::Tensor g0 = gu.g.clone(), u0 = gu.u.clone();  // inputs, before an in-place call overwrites g
      at::Tensor hbuf, h;
      int64_t ld_h;
      if (c.in_place) {
        h = gu.g;
        ld_h = gu.ld;
      } else {
        ld_h = c.cols + c.pad_out;
        hbuf = at::full({c.rows, ld_h}, NAN, g0.options());
        h = hbuf.slice(1, 0, c.cols);
      }
      int rc = k::swiglu_forward(gu.g.data_ptr(), gu.u.data_ptr(), h.data_ptr(), c.rows, c.cols, gu.ld, ld_h,
                                 kdtype(t), nullptr);
      ASSERT_EQ(rc, 0) << k::error_string(rc);
      torch::cuda::synchronize();
      ASSERT_FALSE(any_nan(h));
      if (hbuf.defined() && c.pad_out > 0) {
        EXPECT_TRUE(hbuf.slice(1, c.cols).isnan().all().item<bool>());
      }
      if (c.in_place) {
        EXPECT_TRUE(at::equal(gu.u, u0)) << "u changed";
      }

      // float64: h = silu(g) * u; two roundings (s, h) plus float32 silu.
      at::Tensor g64 = g0.to(at::kCPU, at::kDouble), u64 = u0.to(at::kCPU, at::kDouble);
      at::Tensor h64 = g64 / (1 + at::exp(-g64)) * u64;
      const double u_r = unit_roundoff(t);
      const double rel = t == at::kBFloat16 ? (2 * u_r + u_r * u_r) * 1.01 : 2e-6;
      const at::Tensor tol = h64.abs() * rel + 1e-30;
      EXPECT_EQ(count_outside(h, h64, tol), 0);

      // HF formula in the same dtype on the GPU.
      const at::Tensor hf = hf_swiglu(g0, u0);
      Agreement a = agreement(h, hf);
      if (t == at::kBFloat16) {
        EXPECT_LE(a.max_ulps, 1);
      } else {
        EXPECT_EQ(count_outside(h, hf, 2 * tol), 0);
      }
      pool(all, a);
    }
    if (t == at::kBFloat16) {
      EXPECT_LE(all.mismatch_fraction(), 1e-3);
    }
    std::printf(
        "[ measured ] swiglu forward %s vs HF formula: max %lld ulp, %lld of %lld elements differ (%.3g%%)\n",
        name(t), (long long)all.max_ulps, (long long)all.differing, (long long)all.elements,
        100 * all.mismatch_fraction());
  }
}

// Float64 SwiGLU gradients on the CPU with autograd.
std::pair<at::Tensor, at::Tensor> swiglu_grads64(const at::Tensor& g, const at::Tensor& u,
                                                 const at::Tensor& dh) {
  at::Tensor g64 = g.to(at::kCPU, at::kDouble).detach().requires_grad_(true);
  at::Tensor u64 = u.to(at::kCPU, at::kDouble).detach().requires_grad_(true);
  at::Tensor h = at::silu(g64) * u64;
  h.backward(dh.to(at::kCPU, at::kDouble));
  return {g64.grad(), u64.grad()};
}

TEST(CudaKernelsFused, SwigluBackwardMatchesFloat64AndHfAutograd) {
  REQUIRE_GPU();
  for (auto t : {at::kFloat, at::kBFloat16}) {
    Agreement all_dg, all_du;
    for (const SwigluCase& c : swiglu_cases()) {
      SCOPED_TRACE(describe(c, t));
      GateUp gu = make_gate_up(c, t);
      const at::Tensor g0 = gu.g.clone(), u0 = gu.u.clone();
      at::Tensor dh = at::randn({c.rows, c.cols}).to(g0.options());
      // dg, du: in place over g, u; or the two halves of one padded [rows, 2*cols + pad] buffer; or separate.
      at::Tensor dbuf, dg, du;
      int64_t ld_dgu;
      if (c.in_place) {
        dg = gu.g;
        du = gu.u;
        ld_dgu = gu.ld;
      } else if (c.layout == GuLayout::halves) {
        ld_dgu = 2 * c.cols + c.pad_out;
        dbuf = at::full({c.rows, ld_dgu}, NAN, g0.options());
        dg = dbuf.slice(1, 0, c.cols);
        du = dbuf.slice(1, c.cols, 2 * c.cols);
      } else {
        ld_dgu = c.cols + c.pad_out;
        dg = at::full({c.rows, ld_dgu}, NAN, g0.options()).slice(1, 0, c.cols);
        du = at::full({c.rows, ld_dgu}, NAN, g0.options()).slice(1, 0, c.cols);
      }
      int rc = k::swiglu_backward(dh.data_ptr(), gu.g.data_ptr(), gu.u.data_ptr(), dg.data_ptr(),
                                  du.data_ptr(), c.rows, c.cols, gu.ld, c.cols, ld_dgu, kdtype(t), nullptr);
      ASSERT_EQ(rc, 0) << k::error_string(rc);
      torch::cuda::synchronize();
      ASSERT_FALSE(any_nan(dg));
      ASSERT_FALSE(any_nan(du));
      if (dbuf.defined() && c.pad_out > 0) {
        EXPECT_TRUE(dbuf.slice(1, 2 * c.cols).isnan().all().item<bool>());
      }

      // float64 autograd. du = round(dh * round(silu(g))): (2u + u^2) relative. dg = round(round(dh * u) *
      // silu'(g)): the same, plus silu' in float32, whose error is absolute (cancellation in 1 + g(1 - sig)
      // near g = -1.28): a few float32 ulps times (1 + |g|), scaled by |dh * u|.
      auto [dg64, du64] = swiglu_grads64(g0, u0, dh);
      const double u_r = unit_roundoff(t);
      const double rel = t == at::kBFloat16 ? (2 * u_r + u_r * u_r) * 1.01 : 2e-6;
      at::Tensor g64 = g0.to(at::kCPU, at::kDouble);
      at::Tensor dhu = (dh.to(at::kCPU, at::kDouble) * u0.to(at::kCPU, at::kDouble)).abs();
      const at::Tensor tol_du = du64.abs() * rel + 1e-30;
      const at::Tensor tol_dg = dg64.abs() * rel + dhu * (1 + g64.abs()) * 2e-6 + 1e-30;
      EXPECT_EQ(count_outside(du, du64, tol_du), 0);
      EXPECT_EQ(count_outside(dg, dg64, tol_dg), 0);

      // HF formula under ATen autograd, same dtype, on the GPU.
      at::Tensor gl = g0.clone().requires_grad_(true), ul = u0.clone().requires_grad_(true);
      hf_swiglu(gl, ul).backward(dh);
      Agreement ag = agreement(dg, gl.grad()), au = agreement(du, ul.grad());
      if (t == at::kBFloat16) {
        EXPECT_LE(ag.max_ulps, 1);
        EXPECT_LE(au.max_ulps, 1);
      } else {
        EXPECT_EQ(count_outside(dg, gl.grad(), 2 * tol_dg), 0);
        EXPECT_EQ(count_outside(du, ul.grad(), 2 * tol_du), 0);
      }
      pool(all_dg, ag);
      pool(all_du, au);
    }
    if (t == at::kBFloat16) {
      EXPECT_LE(all_dg.mismatch_fraction(), 1e-3);
      EXPECT_LE(all_du.mismatch_fraction(), 1e-3);
    }
    std::printf(
        "[ measured ] swiglu backward %s vs HF autograd: dg max %lld ulp, %lld of %lld differ (%.3g%%); "
        "du max %lld ulp, %lld differ (%.3g%%)\n",
        name(t), (long long)all_dg.max_ulps, (long long)all_dg.differing, (long long)all_dg.elements,
        100 * all_dg.mismatch_fraction(), (long long)all_du.max_ulps, (long long)all_du.differing,
        100 * all_du.mismatch_fraction());
  }
}

// ---------------------------------------------------------------------------------------------------------
// RoPE

// HF's tables: inv_freq = 1 / theta^(2i/D), freqs = pos * inv_freq, emb = cat(freqs, freqs); float32 [P, D].
std::pair<at::Tensor, at::Tensor> rope_tables(int64_t rows, int64_t head_dim) {
  at::Tensor inv = at::pow(500000.0, at::arange(0, head_dim, 2, at::kLong).to(at::kFloat) / double(head_dim));
  at::Tensor freqs = at::arange(rows, at::kLong).to(at::kFloat).unsqueeze(-1) * inv.reciprocal().unsqueeze(0);
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  return {emb.cos().to(at::kCUDA).contiguous(), emb.sin().to(at::kCUDA).contiguous()};
}

// HF apply_rotary_pos_emb on x [tokens, heads, D]: cos/sin rows gathered at the positions and cast to x's
// dtype; x * cos + rotate_half(x) * sin with rotate_half(x) = cat(-x2, x1). Works in any dtype and on any
// device (float64 on the CPU for the exact reference).
at::Tensor hf_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& pos) {
  const int64_t D = x.size(-1);
  at::Tensor c = cos.index_select(0, pos).to(x.scalar_type()).unsqueeze(1);
  at::Tensor s = sin.index_select(0, pos).to(x.scalar_type()).unsqueeze(1);
  at::Tensor x1 = x.slice(-1, 0, D / 2), x2 = x.slice(-1, D / 2, D);
  return x * c + at::cat({-x2, x1}, -1) * s;
}

struct RopeCase {
  int64_t tokens, heads, head_dim;
  int64_t pad;     // ld = heads * head_dim + pad
  int64_t offset;  // x starts this many elements into its buffer (1: not 16-byte aligned)
  bool in_place;
};
std::string describe(const RopeCase& c, at::ScalarType t) {
  return std::string(name(t)) + " tokens " + std::to_string(c.tokens) + " heads " + std::to_string(c.heads) +
         " D " + std::to_string(c.head_dim) + " pad " + std::to_string(c.pad) + " offset " +
         std::to_string(c.offset) + (c.in_place ? " in-place" : "");
}

const std::vector<RopeCase>& rope_cases() {
  static const std::vector<RopeCase> cases = {
      {1, 1, 64, 0, 0, false},     {7, 8, 64, 0, 0, false},    {33, 32, 64, 0, 0, false},
      {129, 8, 128, 0, 0, false},  {31, 32, 128, 0, 0, false}, {513, 8, 64, 0, 0, true},
      {65, 32, 128, 0, 0, true},   {17, 3, 64, 5, 0, false},   {17, 3, 64, 5, 0, true},  // padded ld: scalar
      {11, 8, 128, 0, 1, false},   {11, 8, 128, 0, 1, true},                             // misaligned: scalar
      {9, 2, 6, 0, 0, false},      {9, 2, 6, 0, 0, true},                                // D/2 = 3: scalar
      {1025, 8, 64, 24, 0, false},  // padded by a multiple of 8: vectors with ld != heads * D
  };
  return cases;
}

constexpr int64_t kTableRows = 4096;

// Positions in [0, kTableRows) with 0 and kTableRows - 1 present (the table's first and last rows).
at::Tensor make_positions(int64_t tokens) {
  at::Tensor pos = at::randint(0, kTableRows, {tokens}, at::kLong);
  pos[0].fill_(0);
  if (tokens > 1) pos[tokens - 1].fill_(kTableRows - 1);
  if (tokens > 2) pos[tokens / 2].fill_(kTableRows - 1);
  return pos.to(at::kCUDA);
}

// The [tokens, heads, D] view of a NaN-filled buffer with row stride ld, `offset` elements in.
at::Tensor strided_view(const RopeCase& c, at::ScalarType t, at::Tensor* buffer) {
  const int64_t width = c.heads * c.head_dim, ld = width + c.pad;
  *buffer = at::full({c.offset + c.tokens * ld}, NAN, at::TensorOptions().dtype(t).device(at::kCUDA));
  return buffer->narrow(0, c.offset, c.tokens * ld)
      .view({c.tokens, ld})
      .slice(1, 0, width)
      .view({c.tokens, c.heads, c.head_dim});
}

// Padding (and the offset prefix) of a buffer must still be NaN.
bool padding_untouched(const RopeCase& c, const at::Tensor& buffer) {
  const int64_t width = c.heads * c.head_dim, ld = width + c.pad;
  bool ok = buffer.narrow(0, 0, c.offset).isnan().all().item<bool>();
  if (c.pad > 0) {
    at::Tensor rows = buffer.narrow(0, c.offset, c.tokens * ld).view({c.tokens, ld});
    ok = ok && rows.slice(1, width).isnan().all().item<bool>();
  }
  return ok;
}

// Bound for a rounded sum of two rounded products A + B: (2u + u^2)(|A| + |B|), from float64 |A| + |B|.
at::Tensor rope_bound(const at::Tensor& x64, const at::Tensor& c64, const at::Tensor& s64, at::ScalarType t) {
  const int64_t D = x64.size(-1);
  at::Tensor swapped = at::cat({x64.slice(-1, D / 2, D), x64.slice(-1, 0, D / 2)}, -1);
  const double u_r = unit_roundoff(t);
  return ((x64 * c64).abs() + (swapped * s64).abs()) * ((2 * u_r + u_r * u_r) * 1.01) + 1e-30;
}

// swiglu_backward_h: the same dg, du as swiglu_backward, and h bit for bit what swiglu_forward writes (in
// place over g and u too, as the LoRA MLP's backward calls it; h at a padded row stride).
TEST(CudaKernelsFused, SwigluBackwardWithHEqualsBackwardAndForward) {
  REQUIRE_GPU();
  for (auto t : {at::kFloat, at::kBFloat16}) {
    for (const SwigluCase& c : swiglu_cases()) {
      SCOPED_TRACE(describe(c, t));
      GateUp gu = make_gate_up(c, t);
      const at::Tensor g0 = gu.g.clone(), u0 = gu.u.clone();
      const at::Tensor dh = at::randn({c.rows, c.cols}).to(g0.options());
      const int64_t ld_h = c.cols + c.pad_out;
      at::Tensor h_ref = at::full({c.rows, ld_h}, NAN, g0.options()).slice(1, 0, c.cols);
      ASSERT_EQ(k::swiglu_forward(gu.g.data_ptr(), gu.u.data_ptr(), h_ref.data_ptr(), c.rows, c.cols, gu.ld, ld_h,
                                  kdtype(t), nullptr),
                0);
      at::Tensor dg1 = at::empty_like(g0), du1 = at::empty_like(u0);
      ASSERT_EQ(k::swiglu_backward(dh.data_ptr(), gu.g.data_ptr(), gu.u.data_ptr(), dg1.data_ptr(), du1.data_ptr(),
                                   c.rows, c.cols, gu.ld, c.cols, c.cols, kdtype(t), nullptr),
                0);
      at::Tensor hbuf = at::full({c.rows, ld_h}, NAN, g0.options()), h = hbuf.slice(1, 0, c.cols);
      // In place over g and u (they are not read again here).
      ASSERT_EQ(k::swiglu_backward_h(dh.data_ptr(), gu.g.data_ptr(), gu.u.data_ptr(), gu.g.data_ptr(),
                                     gu.u.data_ptr(), h.data_ptr(), c.rows, c.cols, gu.ld, c.cols, gu.ld, ld_h,
                                     kdtype(t), nullptr),
                0);
      torch::cuda::synchronize();
      EXPECT_TRUE(at::equal(gu.g.contiguous(), dg1)) << "dg";
      EXPECT_TRUE(at::equal(gu.u.contiguous(), du1)) << "du";
      EXPECT_TRUE(at::equal(h.contiguous(), h_ref.contiguous())) << "h";
      if (c.pad_out > 0) EXPECT_TRUE(hbuf.slice(1, c.cols).isnan().all().item<bool>()) << "h's padding written";
      // Bad strides are refused like swiglu_backward's.
      EXPECT_NE(k::swiglu_backward_h(dh.data_ptr(), g0.data_ptr(), u0.data_ptr(), dg1.data_ptr(), du1.data_ptr(),
                                     h.data_ptr(), c.rows, c.cols, c.cols, c.cols, c.cols, c.cols - 1, kdtype(t),
                                     nullptr),
                0);
    }
  }
}

TEST(CudaKernelsFused, RopeForwardMatchesFloat64AndHfFormulaBitExact) {
  REQUIRE_GPU();
  auto [cos_full, sin_full] = rope_tables(kTableRows, 128);
  for (auto t : {at::kFloat, at::kBFloat16}) {
    for (const RopeCase& c : rope_cases()) {
      SCOPED_TRACE(describe(c, t));
      auto [cos, sin] =
          c.head_dim == 128 ? std::pair{cos_full, sin_full} : rope_tables(kTableRows, c.head_dim);
      at::Tensor pos = make_positions(c.tokens);
      at::Tensor xbuf, outbuf;
      at::Tensor x = strided_view(c, t, &xbuf);
      x.copy_(at::randn({c.tokens, c.heads, c.head_dim}) * 2);
      const at::Tensor x0 = x.clone();
      at::Tensor out = c.in_place ? x : strided_view(c, t, &outbuf);
      const int64_t ld = c.heads * c.head_dim + c.pad;
      int rc = k::rope_forward(x.data_ptr(), out.data_ptr(), pos.data_ptr<int64_t>(), cos.data_ptr<float>(),
                               sin.data_ptr<float>(), c.tokens, c.heads, c.head_dim, ld, kTableRows,
                               kdtype(t), nullptr);
      ASSERT_EQ(rc, 0) << k::error_string(rc);
      torch::cuda::synchronize();
      ASSERT_FALSE(any_nan(out));
      EXPECT_TRUE(padding_untouched(c, c.in_place ? xbuf : outbuf));
      if (!c.in_place) {
        EXPECT_TRUE(at::equal(x, x0)) << "input changed";
      }

      // float64 of HF's math on the dtype-rounded cos/sin (HF casts them to x's dtype first).
      at::Tensor pos_cpu = pos.cpu();
      at::Tensor c64 = cos.cpu().index_select(0, pos_cpu).to(t).to(at::kDouble).unsqueeze(1);
      at::Tensor s64 = sin.cpu().index_select(0, pos_cpu).to(t).to(at::kDouble).unsqueeze(1);
      at::Tensor x64 = x0.to(at::kCPU, at::kDouble);
      at::Tensor ref64 =
          hf_rope(x64, cos.cpu().to(t).to(at::kDouble), sin.cpu().to(t).to(at::kDouble), pos_cpu);
      EXPECT_EQ(count_outside(out, ref64, rope_bound(x64, c64, s64, t)), 0);

      // HF formula in the same dtype on the GPU: the same correctly rounded ops in the same order.
      Agreement a = agreement(out, hf_rope(x0, cos, sin, pos));
      EXPECT_EQ(a.max_ulps, 0) << a.differing << " of " << a.elements << " elements differ";
    }
  }
}

TEST(CudaKernelsFused, RopeBackwardMatchesFloat64AndHfAutogradBitExact) {
  REQUIRE_GPU();
  auto [cos_full, sin_full] = rope_tables(kTableRows, 128);
  for (auto t : {at::kFloat, at::kBFloat16}) {
    for (const RopeCase& c : rope_cases()) {
      SCOPED_TRACE(describe(c, t));
      auto [cos, sin] =
          c.head_dim == 128 ? std::pair{cos_full, sin_full} : rope_tables(kTableRows, c.head_dim);
      at::Tensor pos = make_positions(c.tokens);
      at::Tensor dybuf, dxbuf;
      at::Tensor dy = strided_view(c, t, &dybuf);
      dy.copy_(at::randn({c.tokens, c.heads, c.head_dim}));
      const at::Tensor dy0 = dy.clone();
      at::Tensor dx = c.in_place ? dy : strided_view(c, t, &dxbuf);
      const int64_t ld = c.heads * c.head_dim + c.pad;
      int rc = k::rope_backward(dy.data_ptr(), dx.data_ptr(), pos.data_ptr<int64_t>(), cos.data_ptr<float>(),
                                sin.data_ptr<float>(), c.tokens, c.heads, c.head_dim, ld, kTableRows,
                                kdtype(t), nullptr);
      ASSERT_EQ(rc, 0) << k::error_string(rc);
      torch::cuda::synchronize();
      ASSERT_FALSE(any_nan(dx));
      EXPECT_TRUE(padding_untouched(c, c.in_place ? dybuf : dxbuf));

      // float64 autograd of HF's math (dtype-rounded cos/sin): dx = dy*c + rotate_half^T(dy*s).
      at::Tensor pos_cpu = pos.cpu();
      at::Tensor cos64 = cos.cpu().to(t).to(at::kDouble), sin64 = sin.cpu().to(t).to(at::kDouble);
      at::Tensor x64 = at::randn({c.tokens, c.heads, c.head_dim}, at::kDouble).requires_grad_(true);
      at::Tensor dy64 = dy0.to(at::kCPU, at::kDouble);
      hf_rope(x64, cos64, sin64, pos_cpu).backward(dy64);
      // |dx1| terms: dy1*c1 and dy2*s2 -> the same bound as the forward pass with dy in place of x (s1 ==
      // s2).
      at::Tensor c64 = cos64.index_select(0, pos_cpu).unsqueeze(1),
                 s64 = sin64.index_select(0, pos_cpu).unsqueeze(1);
      EXPECT_EQ(count_outside(dx, x64.grad(), rope_bound(dy64, c64, s64, t)), 0);

      // ATen autograd on HF's formula in the same dtype on the GPU.
      at::Tensor xl = at::randn({c.tokens, c.heads, c.head_dim}).to(dy0.options()).requires_grad_(true);
      hf_rope(xl, cos, sin, pos).backward(dy0);
      Agreement a = agreement(dx, xl.grad());
      EXPECT_EQ(a.max_ulps, 0) << a.differing << " of " << a.elements << " elements differ";
    }
  }
}

// Forward then backward in place on one buffer (how the model uses it: q/k rotated in place, the gradient
// rotated back in place) equals ATen autograd's forward output and input gradient, bit for bit.
TEST(CudaKernelsFused, RopeInPlaceRoundTripMatchesAutograd) {
  REQUIRE_GPU();
  const int64_t tokens = 1000, heads = 8, D = 128;
  auto [cos, sin] = rope_tables(kTableRows, D);
  at::Tensor pos = make_positions(tokens);
  at::Tensor x0 = (at::randn({tokens, heads, D}) * 2).to(at::kCUDA, at::kBFloat16);
  at::Tensor g0 = at::randn({tokens, heads, D}).to(at::kCUDA, at::kBFloat16);
  at::Tensor buf = x0.clone();
  int rc = k::rope_forward(buf.data_ptr(), buf.data_ptr(), pos.data_ptr<int64_t>(), cos.data_ptr<float>(),
                           sin.data_ptr<float>(), tokens, heads, D, heads * D, kTableRows, k::DType::bf16,
                           nullptr);
  ASSERT_EQ(rc, 0) << k::error_string(rc);
  at::Tensor xl = x0.clone().requires_grad_(true);
  at::Tensor y = hf_rope(xl, cos, sin, pos);
  torch::cuda::synchronize();
  EXPECT_EQ(agreement(buf, y.detach()).max_ulps, 0);
  y.backward(g0);
  buf.copy_(g0);
  rc = k::rope_backward(buf.data_ptr(), buf.data_ptr(), pos.data_ptr<int64_t>(), cos.data_ptr<float>(),
                        sin.data_ptr<float>(), tokens, heads, D, heads * D, kTableRows, k::DType::bf16,
                        nullptr);
  ASSERT_EQ(rc, 0) << k::error_string(rc);
  torch::cuda::synchronize();
  EXPECT_EQ(agreement(buf, xl.grad()).max_ulps, 0);
}

// Invalid shapes are refused before anything is launched (no GPU needed), empty ones are no-ops.
TEST(CudaKernelsFused, LaunchersRefuseBadShapes) {
  const int64_t pos = 0;
  float table[4] = {1, 1, 0, 0};
  float x[4] = {1, 2, 3, 4};
  const int bad = 1;  // cudaErrorInvalidValue
  // RoPE: odd head_dim, ld shorter than a token, no heads, empty table, negative tokens.
  EXPECT_EQ(k::rope_forward(x, x, &pos, table, table, 1, 1, 3, 3, 1, k::DType::f32, nullptr), bad);
  EXPECT_EQ(k::rope_forward(x, x, &pos, table, table, 1, 2, 2, 3, 1, k::DType::f32, nullptr), bad);
  EXPECT_EQ(k::rope_backward(x, x, &pos, table, table, 1, 0, 4, 4, 1, k::DType::f32, nullptr), bad);
  EXPECT_EQ(k::rope_backward(x, x, &pos, table, table, 1, 1, 4, 4, 0, k::DType::f32, nullptr), bad);
  EXPECT_EQ(k::rope_forward(x, x, &pos, table, table, -1, 1, 4, 4, 1, k::DType::f32, nullptr), bad);
  EXPECT_EQ(k::rope_forward(nullptr, x, &pos, table, table, 1, 1, 4, 4, 1, k::DType::f32, nullptr), bad);
  EXPECT_EQ(k::rope_forward(x, x, &pos, table, table, 0, 1, 4, 4, 1, k::DType::f32, nullptr), 0);
  // SwiGLU: a row stride shorter than a row, negative sizes.
  EXPECT_EQ(k::swiglu_forward(x, x, x, 1, 4, 3, 4, k::DType::f32, nullptr), bad);
  EXPECT_EQ(k::swiglu_forward(x, x, x, 1, 4, 4, 3, k::DType::f32, nullptr), bad);
  EXPECT_EQ(k::swiglu_forward(x, x, x, -1, 4, 4, 4, k::DType::f32, nullptr), bad);
  EXPECT_EQ(k::swiglu_backward(x, x, x, x, x, 1, 4, 4, 3, 4, k::DType::f32, nullptr), bad);
  EXPECT_EQ(k::swiglu_backward(x, x, x, x, x, 1, 4, 4, 4, 2, k::DType::f32, nullptr), bad);
  EXPECT_EQ(k::swiglu_backward(x, x, x, nullptr, x, 1, 4, 4, 4, 4, k::DType::f32, nullptr), bad);
  EXPECT_EQ(k::swiglu_forward(x, x, x, 0, 4, 4, 4, k::DType::f32, nullptr), 0);
  EXPECT_EQ(x[0], 1.f);  // nothing ran
}

}  // namespace
