// Kernel timings against their floors: each project CUDA kernel at training shapes, beside the ATen reference
// it replaces (the same op under autograd), and the floor (bytes moved at the GPU's memory bandwidth; all
// these ops are memory-bound). Kernels: RMSNorm, SwiGLU and RoPE (forward, backward, and both; the ATen
// backward time is its forward + backward under autograd minus its forward). Prints a table and one JSON
// object per line (bench, not a test). NF4 dequantization is timed against its ATen reference
// (quant::dequantize_nf4_reference on the same GPU).
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
#include "kernels/rope.h"
#include "kernels/swiglu.h"
#include "model/ops.h"
#include "quant/nf4.h"

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
  // SwiGLU at 16384 tokens, intermediate widths of Llama-3.2-1B (8192) and Llama-3.1-8B (14336). Ours reads
  // gate/up as the two halves of one [tokens, 2I] tensor (the fused gate/up GEMM's output) and writes dgate/dup
  // into the halves of one [tokens, 2I] buffer; the ATen composite (silu(gate) * up under autograd, as the model
  // runs it today) gets separate contiguous gate and up tensors.
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{16384, 8192}, {16384, 14336}}) {
    auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
    auto gu = at::randn({rows, 2 * cols}, opts) * 2;
    auto dgu = at::empty_like(gu);
    auto h = at::empty({rows, cols}, opts), dh = at::randn({rows, cols}, opts);
    auto g = gu.slice(1, 0, cols).contiguous(), u = gu.slice(1, cols, 2 * cols).contiguous();
    auto stream = c10::cuda::getCurrentCUDAStream().stream();
    const double n = double(rows) * double(cols);
    auto fwd_kernel = [&] {
      hs::kernels::swiglu_forward(gu.data_ptr(), gu.data_ptr<at::BFloat16>() + cols, h.data_ptr(), rows, cols,
                                  2 * cols, cols, DType::bf16, stream);
    };
    auto bwd_kernel = [&] {
      hs::kernels::swiglu_backward(dh.data_ptr(), gu.data_ptr(), gu.data_ptr<at::BFloat16>() + cols, dgu.data_ptr(),
                                   dgu.data_ptr<at::BFloat16>() + cols, rows, cols, 2 * cols, cols, 2 * cols,
                                   DType::bf16, stream);
    };
    auto bwd_h_kernel = [&] {
      hs::kernels::swiglu_backward_h(dh.data_ptr(), gu.data_ptr(), gu.data_ptr<at::BFloat16>() + cols,
                                     dgu.data_ptr(), dgu.data_ptr<at::BFloat16>() + cols, h.data_ptr(), rows, cols,
                                     2 * cols, cols, 2 * cols, cols, DType::bf16, stream);
    };
    double fwd = time_ms(fwd_kernel), bwd = time_ms(bwd_kernel), bwd_h = time_ms(bwd_h_kernel);
    double both = time_ms([&] {
      fwd_kernel();
      bwd_kernel();
    });
    double fwd_aten = time_ms([&] { ops::swiglu_reference(g, u); });
    auto gr = g.clone().requires_grad_(true), ur = u.clone().requires_grad_(true);
    double both_aten = time_ms([&] {
      auto out = ops::swiglu_reference(gr, ur);
      auto grads = torch::autograd::grad({out}, {gr, ur}, {dh});
    });
    // forward reads g, u and writes h (6 B/elem); backward reads dh, g, u and writes dg, du (10 B/elem).
    row("swiglu forward", rows, cols, n * 6, fwd, fwd_aten, bw);
    row("swiglu backward", rows, cols, n * 10, bwd, both_aten - fwd_aten, bw);
    row("swiglu fwd+bwd", rows, cols, n * 16, both, both_aten, bw);
    // backward_h also writes h (12 B/elem): the LoRA MLP's backward, against a forward recompute + backward.
    row("swiglu bwd+h [ATen col: ours fwd then bwd]", rows, cols, n * 12, bwd_h, fwd + bwd, bw);
  }
  // RoPE at 16384 tokens (8 packed rows of 2048 positions), in place on [tokens, heads, head_dim], for q and k
  // of Llama-3.2-1B (32 and 8 heads of 64) and Llama-3.1-8B (32 and 8 heads of 128). The ATen composite is
  // ops::rope on the [1, heads, tokens, head_dim] view the model uses (out of place, under autograd).
  struct RopeShape {
    const char* what;
    int64_t heads, head_dim;
  };
  for (RopeShape sh : {RopeShape{"rope q", 32, 64}, {"rope k", 8, 64}, {"rope q", 32, 128}, {"rope k", 8, 128}}) {
    const int64_t tokens = 16384, rows_used = 2048, table_rows = 8192, D = sh.head_dim, width = sh.heads * D;
    auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
    auto x = at::randn({tokens, sh.heads, D}, opts), dy = at::randn_like(x);
    auto pos = at::arange(tokens, at::TensorOptions().device(at::kCUDA).dtype(at::kLong)).remainder(rows_used);
    auto inv = at::pow(500000.0, at::arange(0, D, 2, at::kLong).to(at::kFloat) / double(D)).reciprocal();
    auto freqs = at::arange(table_rows, at::kLong).to(at::kFloat).unsqueeze(-1) * inv.unsqueeze(0);
    auto emb = at::cat({freqs, freqs}, -1);
    ops::RopeTable table{emb.cos().to(at::kCUDA), emb.sin().to(at::kCUDA)};
    auto stream = c10::cuda::getCurrentCUDAStream().stream();
    auto launch = [&](bool backward, at::Tensor& t) {
      auto f = backward ? hs::kernels::rope_backward : hs::kernels::rope_forward;
      f(t.data_ptr(), t.data_ptr(), pos.data_ptr<int64_t>(), table.cos.data_ptr<float>(),
        table.sin.data_ptr<float>(), tokens, sh.heads, D, width, table_rows, DType::bf16, stream);
    };
    double fwd = time_ms([&] { launch(false, x); }), bwd = time_ms([&] { launch(true, dy); });
    double both = time_ms([&] {
      launch(false, x);
      launch(true, dy);
    });
    auto as_model = [&](const at::Tensor& t) { return t.view({1, tokens, sh.heads, D}).transpose(1, 2); };
    auto pos2 = pos.view({1, tokens});
    double fwd_aten = time_ms([&] { ops::rope_reference(as_model(x), table, pos2); });
    auto xr = x.clone().requires_grad_(true);
    auto dy4 = as_model(dy);
    double both_aten = time_ms([&] {
      auto out = ops::rope_reference(as_model(xr), table, pos2);
      auto grads = torch::autograd::grad({out}, {xr}, {dy4});
    });
    // x (or dy) read and written once (4 B/elem), 8 B of position per token, and the cos/sin rows in use
    // (2048 rows x D x 2 x 4 B; every token's row is read, but 8 packed rows share them in L2).
    const double n = double(tokens) * double(width);
    const double bytes = n * 4 + tokens * 8.0 + double(rows_used) * D * 8;
    std::string name = std::string(sh.what) + (D == 64 ? " (1B)" : " (8B)");
    row((name + " forward").c_str(), tokens, width, bytes, fwd, fwd_aten, bw);
    row((name + " backward").c_str(), tokens, width, bytes, bwd, both_aten - fwd_aten, bw);
    row((name + " fwd+bwd").c_str(), tokens, width, 2 * bytes, both, both_aten, bw);
  }
  // NF4 dequantization (QLoRA's base, made in every fused block's forward and again in its backward) at the
  // 8B projection shapes: reads n/2 packed + n/64 absmax-code bytes (+ the nested absmax), writes n bf16.
  for (auto [out, in] : {std::pair<int64_t, int64_t>{4096, 4096}, {14336, 4096}, {4096, 14336}}) {
    const auto q = hs::quant::quantize_nf4(
        at::randn({out, in}, at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16)));
    const double n = double(out) * double(in);
    const double nf4_ms = time_ms([&] { hs::quant::dequantize_nf4(q); });
    const double aten_ms = time_ms([&] { hs::quant::dequantize_nf4_reference(q); }, 10);
    row("nf4 dequantize (bf16)", out, in, n / 2 + n / 64 + n / 64 / 256 * 4 + n * 2, nf4_ms, aten_ms, bw);
  }
  return 0;
}
