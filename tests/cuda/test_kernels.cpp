// Each CUDA kernel against a reference computed independently on the CPU in float64 (and, for bf16, the
// HF formula in ATen): fresh random inputs, poisoned outputs (NaN) so unwritten elements fail.
#include <torch/cuda.h>

#include "kernels/rms_norm.h"
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
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 7}, {33, 1000}, {257, 4096}}) {
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

}  // namespace
