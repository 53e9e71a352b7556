// model/runtime: every subcommand's device and dtype words resolve here (errors name the word and list the
// valid ones), and the device table gives NVIDIA's datasheet dense bf16 peaks (H100/H200 SXM 989.4 TFLOP/s,
// A100 312 TFLOP/s) and a peak-memory reading.
#include <ATen/ATen.h>

#include <string>

#include "core/error.h"
#include "model/runtime.h"
#include "support/test_support.h"

namespace {
using namespace hs::model;

TEST(Runtime, DtypeAndDeviceWordsResolveInOnePlace) {
  const at::Device cpu(at::kCPU);
  EXPECT_EQ(resolve_dtype("auto", cpu), at::kFloat);
  EXPECT_EQ(resolve_dtype("auto", at::Device(at::kCUDA, 0)), at::kBFloat16);
  for (const char* w : {"bf16", "bfloat16"}) EXPECT_EQ(resolve_dtype(w, cpu), at::kBFloat16) << w;
  for (const char* w : {"fp32", "float32"}) EXPECT_EQ(resolve_dtype(w, cpu), at::kFloat) << w;
  EXPECT_EQ(resolve_device("cpu"), cpu);
  if (cuda_device_count() == 0) EXPECT_EQ(resolve_device("auto", 3), cpu);
  try {
    resolve_dtype("fp8", cpu);
    FAIL() << "fp8 accepted";
  } catch (const hs::Error& e) {
    EXPECT_EQ(e.where(), "--dtype");
    EXPECT_NE(e.hint_text().find("bfloat16"), std::string::npos);
  }
  try {
    resolve_device("tpu");
    FAIL() << "tpu accepted";
  } catch (const hs::Error& e) {
    EXPECT_NE(e.message().find("tpu"), std::string::npos);
    EXPECT_NE(e.hint_text().find("cuda:N"), std::string::npos);
  }
}

TEST(Runtime, PeakFlopsFromTheDevice) {
  // NVIDIA's datasheet dense BF16 tensor peaks at their boost clocks: H100 SXM5 989.4 TFLOP/s (132 SMs,
  // 1830 MHz), A100 SXM4 312 TFLOP/s (108 SMs, 1410 MHz), A40 149.7 TFLOP/s (84 SMs, 1740 MHz).
  EXPECT_NEAR(peak_bf16_flops(9, 0, 132, 1830e3), 989.4e12, 0.1e12);
  EXPECT_NEAR(peak_bf16_flops(8, 0, 108, 1410e3), 312e12, 0.5e12);
  EXPECT_NEAR(peak_bf16_flops(8, 6, 84, 1740e3), 149.7e12, 0.5e12);
  EXPECT_EQ(peak_bf16_flops(7, 5, 40, 1590e3), 0);  // Turing T4: no bf16 tensor cores, no MFU
  EXPECT_EQ(peak_bf16_flops(at::Device(at::kCPU)), 0);
  EXPECT_EQ(device_name(at::Device(at::kCPU)), "cpu");
  at::Tensor big = at::ones({1 << 20}, at::kFloat);  // 4 MiB touched
  EXPECT_GT(peak_memory_bytes(at::Device(at::kCPU)), double(4 << 20));
  EXPECT_GT(big.sum().item<float>(), 0);
}

}  // namespace
