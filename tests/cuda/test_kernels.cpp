// Each CUDA kernel against a reference computed independently on the CPU in float64 (and, for bf16, the
// HF formula in ATen): fresh random inputs, poisoned outputs (NaN) so unwritten elements fail.
#include <torch/cuda.h>

#include <tuple>

#include "kernels/rms_norm.h"
#include "model/ops.h"
#include "support/test_support.h"

namespace {

#define REQUIRE_GPU() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible; GPU kernel test skipped"

double rel_err(const at::Tensor& a, const at::Tensor& ref) {
  auto a64 = a.to(at::kCPU, at::kDouble), r64 = ref.to(at::kCPU, at::kDouble);
  return (a64 - r64).norm().item<double>() / r64.norm().item<double>();
}

// HF LlamaRMSNorm: weight * (x.float() * rsqrt(mean(x.float()^2) + eps)).to(x.dtype)
at::Tensor hf_rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
  auto xf = x.to(at::kFloat);
  auto n = xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps);
  return w * n.to(x.scalar_type());
}

TEST(CudaKernels, RmsNormF32MatchesFloat64) {
  REQUIRE_GPU();
  // {1, 7}, {4099, 128}: the warp-per-row kernels (cols <= 512); the others one block per row.
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 7}, {4099, 128}, {33, 1000}, {257, 4096}}) {
    auto x = at::randn({rows, cols}, at::kDouble) * 3;
    auto w = at::rand({cols}, at::kDouble) + 0.5;
    auto ref = w * x * at::rsqrt(x.pow(2).mean(-1, true) + 1e-6);
    auto xg = x.to(at::kCUDA, at::kFloat), wg = w.to(at::kCUDA, at::kFloat);
    auto y = at::full_like(xg, NAN);
    auto rstd = at::full({rows}, NAN, xg.options());
    int rc = hs::kernels::rms_norm_forward(xg.data_ptr(), wg.data_ptr(), y.data_ptr(), rstd.data_ptr<float>(), rows,
                                           cols, 1e-6f, hs::kernels::DType::f32, nullptr);
    ASSERT_EQ(rc, 0) << hs::kernels::error_string(rc);
    torch::cuda::synchronize();
    EXPECT_FALSE(y.isnan().any().item<bool>());
    EXPECT_LT(rel_err(y, ref), 1e-6) << rows << "x" << cols;
    EXPECT_LT(rel_err(rstd, at::rsqrt(x.pow(2).mean(-1) + 1e-6)), 1e-6);
  }
}

TEST(CudaKernels, RmsNormBf16MatchesHfFormula) {
  REQUIRE_GPU();
  int64_t rows = 129, cols = 2048;
  auto x = (at::randn({rows, cols}) * 2).to(at::kCUDA, at::kBFloat16);
  auto w = (at::rand({cols}) + 0.5).to(at::kCUDA, at::kBFloat16);
  auto y = at::full_like(x, NAN);
  int rc = hs::kernels::rms_norm_forward(x.data_ptr(), w.data_ptr(), y.data_ptr(), nullptr, rows, cols, 1e-5f,
                                         hs::kernels::DType::bf16, nullptr);
  ASSERT_EQ(rc, 0) << hs::kernels::error_string(rc);
  torch::cuda::synchronize();
  auto ref = hf_rms_norm(x, w, 1e-5);
  EXPECT_FALSE(y.isnan().any().item<bool>());
  // Same formula, same roundings: differences only from the float32 sum order (at most 1 bf16 ulp).
  auto diff = (y.to(at::kFloat) - ref.to(at::kFloat)).abs();
  auto ulp = ref.to(at::kFloat).abs() * (1.0 / 128);
  EXPECT_TRUE((diff <= ulp + 1e-6).all().item<bool>());
  // And against float64 of the same inputs, within bf16 precision.
  auto x64 = x.to(at::kDouble), w64 = w.to(at::kDouble);
  EXPECT_LT(rel_err(y, w64 * x64 * at::rsqrt(x64.pow(2).mean(-1, true) + 1e-5)), 8e-3);
}

// Float64 RMSNorm forward + backward on the CPU with autograd: the reference for the backward kernels.
struct Ref64 {
  at::Tensor dx, dw;
};
Ref64 rms_norm_grads64(const at::Tensor& x, const at::Tensor& w, const at::Tensor& dy, double eps) {
  at::Tensor x64 = x.to(at::kCPU, at::kDouble).detach().requires_grad_(true);
  at::Tensor w64 = w.to(at::kCPU, at::kDouble).detach().requires_grad_(true);
  at::Tensor y = w64 * (x64 * at::rsqrt(x64.pow(2).mean(-1, true) + eps));
  y.backward(dy.to(at::kCPU, at::kDouble));
  return {x64.grad(), w64.grad()};
}

TEST(CudaKernels, RmsNormBackwardF32MatchesFloat64) {
  REQUIRE_GPU();
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 7}, {4099, 128}, {33, 1000}, {3000, 2048}}) {
    auto x = (at::randn({rows, cols}) * 3).to(at::kCUDA), w = (at::rand({cols}) + 0.5).to(at::kCUDA);
    auto dy = at::randn({rows, cols}).to(at::kCUDA);
    auto rstd = at::rsqrt(x.pow(2).mean(-1) + 1e-6).contiguous();
    auto dx = at::full_like(x, NAN);
    int rc = hs::kernels::rms_norm_backward_dx(dy.data_ptr(), x.data_ptr(), w.data_ptr(), rstd.data_ptr<float>(),
                                               dx.data_ptr(), rows, cols, hs::kernels::DType::f32, nullptr);
    ASSERT_EQ(rc, 0) << hs::kernels::error_string(rc);
    auto partial = at::full({hs::kernels::rms_norm_dw_splits(rows, cols), cols}, NAN, x.options());
    rc = hs::kernels::rms_norm_backward_dw(dy.data_ptr(), x.data_ptr(), rstd.data_ptr<float>(),
                                           partial.data_ptr<float>(), rows, cols, hs::kernels::DType::f32, nullptr);
    ASSERT_EQ(rc, 0) << hs::kernels::error_string(rc);
    torch::cuda::synchronize();
    Ref64 ref = rms_norm_grads64(x, w, dy, 1e-6);
    EXPECT_FALSE(dx.isnan().any().item<bool>());
    EXPECT_LT(rel_err(dx, ref.dx), 1e-5) << rows << "x" << cols;
    EXPECT_LT(rel_err(partial.sum(0), ref.dw), 1e-5) << rows << "x" << cols;
  }
}

// The seam: ops::rms_norm on CUDA runs the kernels through autograd (forward and backward), bf16 as in
// training, against transformers' bf16 formula under ATen autograd and against float64.
TEST(CudaKernels, OpsRmsNormUsesTheKernelsWithAutograd) {
  REQUIRE_GPU();
  namespace ops = hs::model::ops;
  // H = 2048: one block per row (the decoder's norms); H = 128: one warp per row (Qwen3's q/k norms).
  for (auto [dtype, H] : {std::pair{at::kFloat, int64_t(2048)}, std::pair{at::kBFloat16, int64_t(2048)},
                          std::pair{at::kBFloat16, int64_t(128)}}) {
    const int64_t B = 4, T = 513;
    auto x0 = (at::randn({B, T, H}) * 2).to(at::kCUDA, dtype);
    auto w0 = (at::rand({H}) + 0.5).to(at::kCUDA, dtype);
    auto dy = at::randn({B, T, H}).to(at::kCUDA, dtype);
    ASSERT_TRUE(ops::rms_norm_has_kernel(x0, w0));
    auto x = x0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true);
    auto y = ops::rms_norm(x, w, 1e-5);
    y.backward(dy);
    auto xr = x0.clone().requires_grad_(true), wr = w0.clone().requires_grad_(true);
    auto yr = hf_rms_norm(xr, wr, 1e-5);
    yr.backward(dy);
    Ref64 ref = rms_norm_grads64(x0, w0, dy, 1e-5);
    auto y64 = w0.to(at::kDouble) * x0.to(at::kDouble) * at::rsqrt(x0.to(at::kDouble).pow(2).mean(-1, true) + 1e-5);
    const bool bf = dtype == at::kBFloat16;
    // float32: both within rounding of float64. bf16: the kernel is as close to float64 as the HF formula's own
    // bf16 autograd is (within 1.5x of its error, plus a floor), so the seam loses nothing.
    for (auto [what, ours, hf, r64] :
         {std::tuple<const char*, at::Tensor, at::Tensor, at::Tensor>{"y", y, yr, y64},
          {"dx", x.grad(), xr.grad(), ref.dx},
          {"dw", w.grad(), wr.grad(), ref.dw}}) {
      const double e_ours = rel_err(ours, r64), e_hf = rel_err(hf, r64);
      if (bf)
        EXPECT_LT(e_ours, std::max(1.5 * e_hf, 4e-3)) << what << " ours " << e_ours << " hf " << e_hf;
      else
        EXPECT_LT(e_ours, 1e-5) << what << " ours " << e_ours << " hf " << e_hf;
    }
  }
  // HS_KERNELS=0 and other dtypes fall back to the reference.
  auto h = at::randn({3, 8}).to(at::kCUDA, at::kHalf), wh = at::ones({8}).to(at::kCUDA, at::kHalf);
  EXPECT_FALSE(hs::model::ops::rms_norm_has_kernel(h, wh));
}

}  // namespace
