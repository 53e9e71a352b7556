// No host syncs in a training micro-batch (issue #12): a small random bf16 llama with LoRA on every projection
// runs one packed micro-batch (three samples in one row, prompts masked) from host tensors -- what
// train::collate() makes -- through Model::loss forward and backward under CUDA sync debug mode = error
// (c10::cuda::warning_state().set_sync_debug_mode(L_ERROR), the C++ side of
// torch.cuda.set_sync_debug_mode("error"): every synchronizing copy, .item() or stream synchronize throws).
// Nothing between the start of the micro-batch and the end of its backward may sync; the blocking path
// (HS_SYNC_INPUTS=1) must sync under the same mode (so the check can fail), and its loss must equal the
// sync-free path's bit for bit, with the same trained-target count. Label cuda; skips without a GPU.
#include <c10/cuda/CUDAFunctions.h>
#include <c10/util/Exception.h>
#include <torch/cuda.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include <ATen/ATen.h>

#include "lora/lora.h"
#include "model/model.h"
#include "support/test_support.h"
#include "support/tiny_model.h"

namespace {

constexpr int64_t kTokens = 1024, kVocab = 512;

// Sets the sync debug mode for its lifetime.
struct SyncDebug {
  explicit SyncDebug(c10::cuda::SyncDebugMode m) { c10::cuda::warning_state().set_sync_debug_mode(m); }
  ~SyncDebug() { c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED); }
};

// HS_SYNC_INPUTS=1 for its lifetime.
struct BlockingInputs {
  BlockingInputs() { setenv("HS_SYNC_INPUTS", "1", 1); }
  ~BlockingInputs() { unsetenv("HS_SYNC_INPUTS"); }
};

class InputSyncGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible; input sync GPU test skipped";
    unsetenv("HS_SYNC_INPUTS");
    dir_ = hs::test::temp_dir("input_sync_gpu");
    hs::test::TinyLlama shape;
    shape.layers = 2;
    shape.vocab = kVocab;
    hs::test::write_tiny_llama(dir_, shape);
    hs::model::LoadOptions lo;
    lo.dtype = at::kBFloat16;
    lo.device = at::Device(at::kCUDA, 0);
    model_ = std::make_unique<hs::model::Model>(hs::model::Model::load(dir_, lo));
    adapter_.emplace(hs::lora::Adapter::create(*model_, hs::lora::LoraConfig{}, 0, at::kFloat));
    {
      at::NoGradGuard ng;  // B = 0 at init: give B values so that every LoRA gradient is exercised
      at::manual_seed(3);
      for (auto& nt : adapter_->trainable()) nt.tensor.normal_(0.0, 0.05);
    }
    model_->set_training(true);
    // What train::collate() makes for one packed row: CPU int64 ids, uint8 mask, int64 cu_seqlens.
    at::manual_seed(11);
    ids_ = at::randint(kVocab, {1, kTokens}, at::TensorOptions().dtype(at::kLong));
    cu_seqlens_ = at::tensor({int64_t(0), int64_t(300), int64_t(700), kTokens}, at::kLong);
    mask_ = at::ones({1, kTokens}, at::kByte);
    for (int64_t begin : {int64_t(0), int64_t(300), int64_t(700)}) mask_.slice(1, begin, begin + 40).zero_();
    // Trained targets: position t+1 predicted at t within a sample, t+1 trained.
    expected_count_ = 0;
    for (int64_t t = 1; t < kTokens; ++t)
      if (mask_[0][t].item<uint8_t>() && t != 300 && t != 700) ++expected_count_;
  }
  void TearDown() override {
    unsetenv("HS_SYNC_INPUTS");
    adapter_.reset();
    model_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // One micro-batch as the trainer runs it: host tensors into Model::loss, then backward.
  hs::model::ops::LossSum micro_batch() {
    for (auto& nt : adapter_->trainable()) nt.tensor.mutable_grad() = at::Tensor();
    hs::model::Inputs in;
    in.input_ids = ids_;
    in.cu_seqlens = cu_seqlens_;
    auto ls = model_->loss(in, mask_);
    (ls.sum / double(std::max<int64_t>(1, ls.count))).backward();
    return ls;
  }

  std::string dir_;
  std::unique_ptr<hs::model::Model> model_;
  std::optional<hs::lora::Adapter> adapter_;
  at::Tensor ids_, cu_seqlens_, mask_;
  int64_t expected_count_ = 0;
};

TEST_F(InputSyncGpu, MicroBatchForwardAndBackwardNeverSyncAndMatchTheBlockingPath) {
  micro_batch();  // warm-up: RoPE tables, cuBLAS handles, pinned and device blocks
  torch::cuda::synchronize();

  hs::model::ops::LossSum fast;
  std::string sync_error;
  {
    SyncDebug guard(c10::cuda::SyncDebugMode::L_ERROR);
    try {
      fast = micro_batch();
    } catch (const c10::Error& e) {
      sync_error = e.what_without_backtrace();
    }
  }
  ASSERT_EQ(sync_error, "") << "a host sync inside the micro-batch (forward or backward)";
  torch::cuda::synchronize();
  EXPECT_EQ(fast.count, expected_count_);
  for (const auto& nt : adapter_->trainable()) {
    ASSERT_TRUE(nt.tensor.grad().defined()) << nt.name;
    EXPECT_GT(nt.tensor.grad().abs().max().item<double>(), 0.0) << nt.name << ": zero gradient";
  }
  const at::Tensor fast_loss = fast.sum.detach().cpu();

  BlockingInputs blocking;
  bool blocking_synced = false;
  {
    SyncDebug guard(c10::cuda::SyncDebugMode::L_ERROR);
    try {
      micro_batch();
    } catch (const c10::Error&) {
      blocking_synced = true;
    }
  }
  EXPECT_TRUE(blocking_synced) << "HS_SYNC_INPUTS=1 did not sync: the sync debug check cannot fail";
  torch::cuda::synchronize();
  const hs::model::ops::LossSum slow = micro_batch();
  torch::cuda::synchronize();
  EXPECT_EQ(slow.count, fast.count);
  const at::Tensor slow_loss = slow.sum.detach().cpu();
  EXPECT_TRUE(at::equal(fast_loss, slow_loss))
      << "loss " << fast_loss.item<double>() << " (sync-free) vs " << slow_loss.item<double>() << " (blocking)";
}

}  // namespace
