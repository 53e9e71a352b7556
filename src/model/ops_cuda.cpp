// The kernel seam: the ops of ops.h that have a project CUDA kernel dispatch to it here, through autograd
// functions that call the kernels' launchers in kernels/ for the forward and the backward pass. The ATen
// composites in ops.cpp stay the reference (CPU, float64 tests) and the fallback: other dtypes, other devices,
// builds without CUDA, and HS_KERNELS=0 in the environment (for A/B runs against the reference).
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "model/ops.h"

#if HS_HAVE_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/csrc/autograd/custom_function.h>

#include "kernels/rms_norm.h"
#endif

namespace hs::model::ops {

bool kernels_enabled() {
#if HS_HAVE_KERNELS
  static const bool enabled = [] {
    const char* v = std::getenv("HS_KERNELS");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return enabled;
#else
  return false;
#endif
}

#if HS_HAVE_KERNELS
namespace {

void check_launch(int code, const char* what) {
  if (code != 0) throw Error(str(what, " failed: ", kernels::error_string(code)));
}

kernels::DType kernel_dtype(at::ScalarType t) {
  return t == at::kBFloat16 ? kernels::DType::bf16 : kernels::DType::f32;
}

// RMSNorm over the last dimension: y = w * round(x * rstd); saves x, w and rstd (float32, one per row).
struct RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& w,
                            double eps) {
    const at::Tensor x = x_in.contiguous();
    const int64_t cols = x.size(-1), rows = x.numel() / cols;
    c10::cuda::CUDAGuard guard(x.device());
    at::Tensor y = at::empty_like(x);
    at::Tensor rstd = at::empty({rows}, x.options().dtype(at::kFloat));
    check_launch(kernels::rms_norm_forward(x.data_ptr(), w.data_ptr(), y.data_ptr(), rstd.data_ptr<float>(), rows,
                                           cols, float(eps), kernel_dtype(x.scalar_type()),
                                           c10::cuda::getCurrentCUDAStream().stream()),
                 "rms_norm_forward");
    ctx->save_for_backward({x, w, rstd});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1], &rstd = saved[2];
    const at::Tensor dy = grads[0].contiguous();
    const int64_t cols = x.size(-1), rows = x.numel() / cols;
    c10::cuda::CUDAGuard guard(x.device());
    const auto stream = c10::cuda::getCurrentCUDAStream().stream();
    const kernels::DType dt = kernel_dtype(x.scalar_type());
    at::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) {
      dx = at::empty_like(x);
      check_launch(kernels::rms_norm_backward_dx(dy.data_ptr(), x.data_ptr(), w.data_ptr(), rstd.data_ptr<float>(),
                                                 dx.data_ptr(), rows, cols, dt, stream),
                   "rms_norm_backward_dx");
    }
    if (ctx->needs_input_grad(1)) {
      at::Tensor partial =
          at::empty({kernels::rms_norm_dw_splits(rows, cols), cols}, x.options().dtype(at::kFloat));
      check_launch(kernels::rms_norm_backward_dw(dy.data_ptr(), x.data_ptr(), rstd.data_ptr<float>(),
                                                 partial.data_ptr<float>(), rows, cols, dt, stream),
                   "rms_norm_backward_dw");
      dw = partial.sum(0).to(w.scalar_type());
    }
    return {dx, dw, at::Tensor()};
  }
};

}  // namespace

bool rms_norm_has_kernel(const at::Tensor& x, const at::Tensor& weight) {
  const auto t = x.scalar_type();
  return kernels_enabled() && x.is_cuda() && (t == at::kFloat || t == at::kBFloat16) && weight.scalar_type() == t &&
         weight.device() == x.device() && weight.dim() == 1 && weight.size(0) == x.size(-1) &&
         weight.is_contiguous() && x.numel() > 0;
}

at::Tensor rms_norm_kernel(const at::Tensor& x, const at::Tensor& weight, double eps) {
  return RmsNormFunction::apply(x, weight, eps);
}
#else
bool rms_norm_has_kernel(const at::Tensor&, const at::Tensor&) { return false; }
at::Tensor rms_norm_kernel(const at::Tensor&, const at::Tensor&, double) {
  throw Error("this build has no CUDA kernels").hint("configure with -DHS_CUDA=ON");
}
#endif

}  // namespace hs::model::ops
