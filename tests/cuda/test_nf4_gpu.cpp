// NF4 on the GPU (kernels/nf4.cu through quant::dequantize_nf4/quantize_nf4) against the CPU reference of
// src/quant/nf4 bit for bit: dequantization of the same state for every output dtype, odd sizes and unaligned
// buffers; quantization with bitsandbytes' CUDA rules (x * (1/absmax), its NF4 tree, torch's CUDA mean for
// the offset, its 7-step binary search for the absmax codes, re-typed here from bitsandbytes' kernels.cu).
// The GPU scales by an approximate reciprocal (rcp.approx, within 1 ulp, as bitsandbytes' fast-math build): a
// code must be the one of the exact reciprocal or of one of its float neighbours. Skips without a GPU.
#include <torch/cuda.h>

#include <cmath>
#include <vector>

#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/csrc/autograd/autograd.h>

#include "core/error.h"
#include "lora/lora.h"
#include "model/ops.h"
#include "quant/nf4.h"
#include "quant/nf4_linear.h"
#include "support/test_support.h"

namespace {

#define REQUIRE_GPU() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible; NF4 GPU test skipped"

bool bits_equal(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.to(at::kCPU).contiguous(), y = b.to(at::kCPU).contiguous();
  return x.scalar_type() == y.scalar_type() && x.sizes() == y.sizes() &&
         at::equal(x.view(at::kByte), y.view(at::kByte));
}

// bitsandbytes' dQuantize<0> (csrc kernels, 0.50.2), on the CPU: binary search from entry 127, then the last
// probe or its neighbour on x's side by their midpoint. (Written from bitsandbytes' source; the real oracle is
// bitsandbytes' CUDA quantizer itself, compared by tests/parity/nf4_bnb.py where bitsandbytes is installed.)
uint8_t cuda_dynamic_code(const float* code, float x) {
  int pivot = 127, upper_pivot = 255, lower_pivot = 0;
  float lower = -1.0f, upper = 1.0f, val = code[pivot];
  for (int i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lower_pivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upper_pivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[pivot];
  }
  if (upper_pivot == 255) upper = code[255];
  if (lower_pivot == 0) lower = code[0];
  if (x > val) return x > (upper + val) * 0.5f ? uint8_t(upper_pivot) : uint8_t(pivot);
  return x < (lower + val) * 0.5f ? uint8_t(lower_pivot) : uint8_t(pivot);
}

TEST(Nf4Gpu, DequantizeMatchesReference) {
  REQUIRE_GPU();
  at::manual_seed(1);
  for (auto shape : std::vector<std::vector<int64_t>>{{7, 9}, {96, 100}, {64, 128}, {3, 17}, {1000, 4160}}) {
    for (at::ScalarType t : {at::kBFloat16, at::kHalf, at::kFloat}) {
      const hs::quant::Nf4Tensor q = hs::quant::quantize_nf4_reference(at::randn(shape).to(t));
      const at::Tensor ref = hs::quant::dequantize_nf4_reference(q);
      const hs::quant::Nf4Tensor g = q.to(at::kCUDA);
      const at::Tensor out = hs::quant::dequantize_nf4(g);
      EXPECT_TRUE(out.is_cuda());
      EXPECT_TRUE(bits_equal(out, ref)) << shape[0] << "x" << shape[1] << " " << c10::toString(t);
      // Packed codes at an odd address: the scalar path.
      hs::quant::Nf4Tensor u = g;
      const at::Tensor buf = at::empty({g.packed.numel() + 1}, g.packed.options());
      u.packed = buf.slice(0, 1).view({-1, 1});
      u.packed.copy_(g.packed);
      EXPECT_TRUE(bits_equal(hs::quant::dequantize_nf4(u), ref))
          << "unaligned " << shape[0] << "x" << shape[1];
    }
  }
}

// The fused q|k|v and gate|up paths unpack each NF4 weight straight into its rows of one buffer.
TEST(Nf4Gpu, DequantizeIntoRowsOfOneBufferEqualsDequantize) {
  REQUIRE_GPU();
  at::manual_seed(2);
  // Widths with in % 8 != 0 put later parts at addresses the vector stores cannot use (the scalar path).
  for (int64_t in : {128, 100, 4160, 9}) {
    for (at::ScalarType t : {at::kBFloat16, at::kFloat}) {
      std::vector<hs::quant::Nf4Tensor> qs;
      int64_t rows = 0;
      for (int64_t out : {64, 17, 33}) {
        qs.push_back(hs::quant::quantize_nf4(at::randn({out, in}, at::kCUDA).to(t)));
        rows += out;
      }
      for (at::ScalarType dt : {t, at::kFloat, at::kHalf}) {
        at::Tensor buf = at::full({rows, in}, 7.0, at::TensorOptions().dtype(dt).device(at::kCUDA));
        int64_t r = 0;
        for (const auto& q : qs) {
          at::Tensor part = buf.narrow(0, r, q.shape[0]);
          hs::quant::dequantize_nf4_into(q, part);
          r += q.shape[0];
        }
        std::vector<at::Tensor> parts;
        for (const auto& q : qs) parts.push_back(hs::quant::dequantize_nf4(q).to(dt));
        EXPECT_TRUE(bits_equal(buf, at::cat(parts, 0)))
            << "in " << in << " " << c10::toString(t) << " into " << c10::toString(dt);
      }
      at::Tensor wrong = at::empty({qs[0].numel() + 1}, at::TensorOptions().dtype(t).device(at::kCUDA));
      EXPECT_THROW(hs::quant::dequantize_nf4_into(qs[0], wrong), hs::Error);
    }
  }
}

TEST(Nf4Gpu, QuantizeFollowsBitsandbytesCudaRules) {
  REQUIRE_GPU();
  at::manual_seed(2);
  const at::Tensor dyn = hs::quant::dynamic_code();
  for (auto shape : std::vector<std::vector<int64_t>>{{96, 100}, {512, 1024}, {33, 320}, {7, 9}}) {
    const at::Tensor w = (at::randn(shape) * (at::rand({shape[0], 1}) + 0.05)).to(at::kBFloat16);
    const hs::quant::Nf4Tensor g = hs::quant::quantize_nf4(w.to(at::kCUDA));
    const hs::quant::Nf4Tensor c = hs::quant::quantize_nf4_reference(w);  // the CPU rules
    const int64_t n = w.numel(), nb = (n + 63) / 64;
    ASSERT_EQ(g.shape, shape);
    EXPECT_TRUE(bits_equal(g.code, c.code));
    EXPECT_TRUE(bits_equal(g.nested_code, dyn));
    // 4-bit codes: NF4 of x * scale for the block's scale or a float neighbour of it (the CPU path, exact
    // reciprocal, is the middle candidate; it divides in a trailing partial block instead).
    const at::Tensor wf = w.to(at::kFloat).reshape(-1);
    const at::Tensor bounds = (g.code.to(at::kCPU).slice(0, 0, -1) + g.code.to(at::kCPU).slice(0, 1)) / 2;
    const at::Tensor am64 =
        std::get<0>(at::constant_pad_nd(wf.abs(), {0, nb * 64 - n}, 0).view({nb, 64}).max(1));
    const at::Tensor r = am64.reciprocal();
    const at::Tensor rs = r.repeat_interleave(64).slice(0, 0, n);
    const auto codes_for = [&](const at::Tensor& scale) {
      at::Tensor q = at::bucketize(wf * scale, bounds);
      return at::constant_pad_nd(q, {0, n % 2}, 7);
    };
    const at::Tensor lo = codes_for(at::nextafter(rs, at::zeros_like(rs))), mid = codes_for(rs),
                     hi = codes_for(at::nextafter(rs, at::full_like(rs, INFINITY)));
    const at::Tensor p = g.packed.view(-1).to(at::kCPU).to(at::kLong);
    const at::Tensor got4 = at::stack({at::floor_divide(p, 16), at::remainder(p, 16)}, 1).view(-1);
    EXPECT_TRUE(((got4 == lo) | (got4 == mid) | (got4 == hi)).all().item<bool>());
    const double off4 = (got4 != mid).to(at::kDouble).mean().item<double>();
    EXPECT_LT(off4, 1e-3) << "4-bit codes off the exact-reciprocal code";
    // The absmax: torch's CUDA mean of the raw block absmax, then bitsandbytes' CUDA 8-bit codes.
    const at::Tensor flat = w.to(at::kFloat).reshape(-1).abs();
    const at::Tensor raw = std::get<0>(at::constant_pad_nd(flat, {0, nb * 64 - n}, 0).view({nb, 64}).max(1));
    const float offset = raw.to(at::kCUDA).mean().item<float>();
    EXPECT_EQ(g.offset, offset);
    const at::Tensor x = raw - offset;
    const int64_t nn = (nb + 255) / 256;
    const at::Tensor m =
        std::get<0>(at::constant_pad_nd(x.abs(), {0, nn * 256 - nb}, 0).view({nn, 256}).max(1));
    EXPECT_TRUE(bits_equal(g.nested_absmax, m));
    const float* xp = x.data_ptr<float>();
    const float* mp = m.data_ptr<float>();
    const float* cp = dyn.data_ptr<float>();
    const at::Tensor got = g.absmax.to(at::kCPU);
    int64_t off = 0, bad = 0;
    for (int64_t b = 0; b < nb; ++b) {
      const float r8 = 1.0f / mp[b / 256];
      const uint8_t c0 = cuda_dynamic_code(cp, xp[b] * r8);
      const uint8_t cl = cuda_dynamic_code(cp, xp[b] * std::nextafter(r8, 0.0f));
      const uint8_t ch = cuda_dynamic_code(cp, xp[b] * std::nextafter(r8, INFINITY));
      const uint8_t v = got[b].item<uint8_t>();
      off += v != c0;
      bad += v != c0 && v != cl && v != ch;
    }
    EXPECT_EQ(bad, 0) << "absmax codes outside bitsandbytes' CUDA rule in " << bad << " of " << nb;
    EXPECT_LE(off, std::max<int64_t>(1, nb / 100))
        << off << " of " << nb << " absmax codes off the exact reciprocal";
    // Dequantizing the GPU state on the GPU equals the reference on the CPU.
    EXPECT_TRUE(
        bits_equal(hs::quant::dequantize_nf4(g), hs::quant::dequantize_nf4_reference(g.to(at::kCPU))));
  }
}

TEST(Nf4Gpu, ZeroBlockGetsCodeZeroLikeBitsandbytesCuda) {
  REQUIRE_GPU();
  at::Tensor w = at::randn({4, 64});
  w[1].zero_();
  const hs::quant::Nf4Tensor g = hs::quant::quantize_nf4(w.to(at::kCUDA));
  const at::Tensor p = g.packed.view(-1).to(at::kCPU);
  EXPECT_TRUE((p.slice(0, 32, 64) == 0).all().item<bool>());  // 0 * (1/0) = NaN -> code 0
  EXPECT_EQ(g.absmax.numel(), 4);
}

namespace ops = hs::model::ops;

at::Tensor leaf(const at::Tensor& t) { return t.detach().clone().requires_grad_(true); }

int64_t allocated() {
  return c10::cuda::CUDACachingAllocator::getDeviceStats(0)
      .allocated_bytes[size_t(c10::CachingAllocator::StatType::AGGREGATE)]
      .current;
}

// QLoRA's fast path: LoRA over an NF4 base unpacks the weight in the forward and again in the backward and
// computes exactly what the dense fast path computes on the dequantized weight (bit for bit); LoraLinear
// dispatches to it; the forward keeps no dense copy of the weight for the backward.
TEST(Nf4Gpu, QloraFastPathEqualsDenseFastPathOnDequantizedWeights) {
  REQUIRE_GPU();
  if (!ops::kernels_enabled()) GTEST_SKIP() << "kernels disabled";
  at::manual_seed(11);
  auto cuda = at::TensorOptions().device(at::kCUDA);
  const int64_t N = 300, H = 1024, Q = 1024, KV = 256, I = 2048, r = 16;
  auto nf4 = [&](int64_t out, int64_t in) {
    return std::make_shared<hs::quant::Nf4Linear>(
        hs::quant::quantize_nf4((at::randn({out, in}, cuda) * 0.05).to(at::kBFloat16)), at::Tensor());
  };
  auto proj = [&](const std::shared_ptr<hs::quant::Nf4Linear>& base, bool packed) {
    ops::LoraProj p{packed ? at::Tensor() : base->dequantized(), at::Tensor(),
                    leaf(at::randn({r, base->in_features()}, cuda) * 0.05),
                    leaf(at::randn({base->out_features(), r}, cuda) * 0.05), 2.0, 0.0};
    if (packed) p.packed = base.get();
    return p;
  };
  auto grads = [](const at::Tensor& y, const at::Tensor& g, const at::Tensor& x,
                  const std::vector<ops::LoraProj>& ps) {
    torch::autograd::backward({y}, {g});
    std::vector<at::Tensor> out{y.detach(), x.grad()};
    for (const auto& p : ps) out.push_back(p.a.grad()), out.push_back(p.b.grad());
    return out;
  };
  auto same = [](const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b, const char* what) {
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(bits_equal(a[i], b[i])) << what << " output " << i;
  };
  const auto x = at::randn({N, H}, cuda).to(at::kBFloat16);

  {  // one projection, and LoraLinear's dispatch
    auto base = nf4(Q, H);
    at::manual_seed(5);
    auto pp = proj(base, true);
    at::manual_seed(5);
    auto pd = proj(base, false);
    const auto g = at::randn({N, Q}, cuda).to(at::kBFloat16);
    ASSERT_TRUE(ops::lora_proj_has_fast_path(x, pp, true));
    auto xp = leaf(x), xd = leaf(x), xl = leaf(x);
    {
      at::NoGradGuard no_grad;  // cuBLAS's workspace comes from the caching allocator on the first GEMM
      ops::lora_proj_fast(x, pp);
    }
    const int64_t before = allocated();
    at::Tensor y = ops::lora_proj_fast(xp, pp);
    const int64_t kept = allocated() - before;
    // y itself, x A^T and bf16 copies of A and B; no [out, in] weight (2 MiB here).
    EXPECT_LT(kept, y.nbytes() + Q * H);
    auto a = grads(y, g, xp, {pp});
    auto b = grads(ops::lora_linear_fast(xd, pd.weight, {}, pd.a, pd.b, 2.0), g, xd, {pd});
    same(a, b, "projection");
    hs::lora::LoraLinear wrapped(base, pp.a.detach().clone().requires_grad_(true),
                                 pp.b.detach().clone().requires_grad_(true), 2.0, 0.0);
    EXPECT_EQ(wrapped.packed_base(), base.get());
    at::Tensor yl = wrapped.forward(xl, true);
    EXPECT_TRUE(bits_equal(yl, a[0]));
    // ... and against PEFT's formula on the dequantized weight (fp32 LoRA branch): bf16 tolerance.
    at::Tensor yr = ops::lora_linear_reference(x, base->dequantized(), {}, pp.a.detach(), pp.b.detach(), 2.0, 0.0,
                                               false);
    const double err = (yl.to(at::kDouble) - yr.to(at::kDouble)).norm().item<double>() /
                       yr.to(at::kDouble).norm().item<double>();
    EXPECT_LT(err, 8e-3);
  }
  {  // q, k, v
    std::vector<std::shared_ptr<hs::quant::Nf4Linear>> bases{nf4(Q, H), nf4(KV, H), nf4(KV, H)};
    std::vector<ops::LoraProj> pp, pd;
    for (auto& b : bases) {
      at::manual_seed(9);
      pp.push_back(proj(b, true));
      at::manual_seed(9);
      pd.push_back(proj(b, false));
    }
    const auto g = at::randn({N, Q + 2 * KV}, cuda).to(at::kBFloat16);
    ASSERT_TRUE(ops::lora_qkv_has_fast_path(x, pp[0], pp[1], pp[2], true));
    auto xp = leaf(x), xd = leaf(x);
    same(grads(ops::lora_qkv_fast(xp, pp[0], pp[1], pp[2]), g, xp, pp),
         grads(ops::lora_qkv_fast(xd, pd[0], pd[1], pd[2]), g, xd, pd), "qkv");
  }
  {  // the SwiGLU MLP
    std::vector<std::shared_ptr<hs::quant::Nf4Linear>> bases{nf4(I, H), nf4(I, H), nf4(H, I)};
    std::vector<ops::LoraProj> pp, pd;
    for (auto& b : bases) {
      at::manual_seed(13);
      pp.push_back(proj(b, true));
      at::manual_seed(13);
      pd.push_back(proj(b, false));
    }
    const auto g = at::randn({N, H}, cuda).to(at::kBFloat16);
    ASSERT_TRUE(ops::lora_mlp_has_fast_path(x, pp[0], pp[1], pp[2], true));
    auto xp = leaf(x), xd = leaf(x);
    same(grads(ops::lora_mlp_fast(xp, pp[0], pp[1], pp[2]), g, xp, pp),
         grads(ops::lora_mlp_fast(xd, pd[0], pd[1], pd[2]), g, xd, pd), "mlp");
  }
}

}  // namespace
