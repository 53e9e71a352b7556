// Kernel timings against their floors: each project CUDA kernel at training shapes, beside the ATen reference
// it replaces (the same op under autograd), and the floor (bytes moved at the GPU's memory bandwidth; all
// these ops are memory-bound). Prints a table and one JSON object per line (bench, not a test).
//   build/kernels_bench [--bandwidth-gbs 3350]      (H100 SXM: 3350 GB/s; H200: 4800 GB/s)
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/cuda.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

#include "kernels/rms_norm.h"
#include "model/ops.h"

namespace {

double time_ms(const std::function<void()>& f, int iters = 50) {
  for (int i = 0; i < 5; ++i) f();
  at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
  auto stream = c10::cuda::getCurrentCUDAStream();
  start.record(stream);
  for (int i = 0; i < iters; ++i) f();
  stop.record(stream);
  stop.synchronize();
  return start.elapsed_time(stop) / iters;
}

void row(const char* op, int64_t rows, int64_t cols, double bytes, double ours_ms, double aten_ms, double bw_gbs) {
  const double floor_ms = bytes / (bw_gbs * 1e9) * 1e3;
  std::printf("%-22s %6lld x %-5lld  floor %7.1f us  ours %7.1f us (%4.0f%% of floor speed)  ATen %7.1f us\n",
              op, (long long)rows, (long long)cols, floor_ms * 1e3, ours_ms * 1e3, 100 * floor_ms / ours_ms,
              aten_ms * 1e3);
  std::printf("{\"bench\":\"kernels\",\"op\":\"%s\",\"rows\":%lld,\"cols\":%lld,\"bytes\":%.0f,\"floor_us\":%.2f,"
              "\"ours_us\":%.2f,\"aten_us\":%.2f,\"bandwidth_gbs\":%.0f}\n",
              op, (long long)rows, (long long)cols, bytes, floor_ms * 1e3, ours_ms * 1e3, aten_ms * 1e3, bw_gbs);
}

}  // namespace

int main(int argc, char** argv) {
  double bw = 3350;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--bandwidth-gbs") == 0) bw = std::atof(argv[i + 1]);
  if (!torch::cuda::is_available()) {
    std::fprintf(stderr, "kernels_bench: no CUDA GPU\n");
    return 77;
  }
  namespace ops = hs::model::ops;
  using hs::kernels::DType;
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{16384, 2048}, {8192, 4096}, {16384, 1024}}) {
    auto x = at::randn({rows, cols}, at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16));
    auto w = (at::rand({cols}) + 0.5).to(at::kCUDA, at::kBFloat16);
    auto dy = at::randn_like(x);
    auto y = at::empty_like(x), dx = at::empty_like(x);
    auto rstd = at::empty({rows}, x.options().dtype(at::kFloat));
    auto partial = at::empty({hs::kernels::rms_norm_dw_splits(rows, cols), cols}, x.options().dtype(at::kFloat));
    auto stream = c10::cuda::getCurrentCUDAStream().stream();
    const double n = double(rows) * double(cols);
    double fwd = time_ms([&] {
      hs::kernels::rms_norm_forward(x.data_ptr(), w.data_ptr(), y.data_ptr(), rstd.data_ptr<float>(), rows, cols,
                                    1e-5f, DType::bf16, stream);
    });
    double fwd_aten = time_ms([&] { ops::rms_norm_reference(x, w, 1e-5); });
    row("rms_norm forward", rows, cols, n * 4, fwd, fwd_aten, bw);
    double bwd = time_ms([&] {
      hs::kernels::rms_norm_backward_dx(dy.data_ptr(), x.data_ptr(), w.data_ptr(), rstd.data_ptr<float>(),
                                        dx.data_ptr(), rows, cols, DType::bf16, stream);
      hs::kernels::rms_norm_backward_dw(dy.data_ptr(), x.data_ptr(), rstd.data_ptr<float>(), partial.data_ptr<float>(),
                                        rows, cols, DType::bf16, stream);
      partial.sum(0);
    });
    auto xr = x.clone().requires_grad_(true), wr = w.clone().requires_grad_(true);
    double bwd_aten = time_ms([&] {
      auto out = ops::rms_norm_reference(xr, wr, 1e-5);
      auto g = torch::autograd::grad({out}, {xr, wr}, {dy});
    }) - fwd_aten;
    // dx reads dy, x and writes dx (6 B/elem); dw reads dy and x again (4 B/elem).
    row("rms_norm backward dx+dw", rows, cols, n * 10, bwd, bwd_aten, bw);
  }
  return 0;
}
