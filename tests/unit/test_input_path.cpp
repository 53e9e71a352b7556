// Model::loss from host tensors (issue #12), on the CPU: the sync-free input path (ids checked on the host,
// trained positions gathered by host-computed (row, column) indices) against the blocking one that
// HS_SYNC_INPUTS=1 keeps (device mask, boolean indexing): one packed row of three samples, two prompts masked, a
// small random llama with LoRA -- the same loss, target count and every LoRA gradient bit for bit, and the
// same error for a token id outside the vocabulary.
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "core/error.h"
#include "lora/lora.h"
#include "model/model.h"
#include "support/test_support.h"
#include "support/tiny_model.h"

namespace {

constexpr int64_t kTokens = 96, kVocab = 128;

struct Result {
  at::Tensor loss;
  int64_t count = 0;
  std::vector<at::Tensor> grads;
};

class InputPath : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("HS_SYNC_INPUTS");
    dir_ = hs::test::temp_dir("input_path");
    hs::test::TinyLlama shape;
    shape.hidden = 64, shape.inter = 128, shape.layers = 2, shape.heads = 4, shape.kv_heads = 2;
    shape.head_dim = 16, shape.vocab = kVocab;
    hs::test::write_tiny_llama(dir_, shape);
    hs::model::LoadOptions lo;
    lo.dtype = at::kFloat;
    model_ = std::make_unique<hs::model::Model>(hs::model::Model::load(dir_, lo));
    adapter_.emplace(hs::lora::Adapter::create(*model_, hs::lora::LoraConfig{}, 0, at::kFloat));
    {
      at::NoGradGuard ng;
      at::manual_seed(3);
      for (auto& nt : adapter_->trainable()) nt.tensor.normal_(0.0, 0.05);
    }
    model_->set_training(true);
    at::manual_seed(11);
    ids_ = at::randint(kVocab, {1, kTokens}, at::TensorOptions().dtype(at::kLong));
    cu_seqlens_ = at::tensor({int64_t(0), int64_t(30), int64_t(61), kTokens}, at::kLong);
    mask_ = at::ones({1, kTokens}, at::kByte);
    // The first two samples' prompts are masked; the third is trained from its first token, which is still
    // no target (a sample's first token is never predicted from the previous sample).
    for (int64_t begin : {int64_t(0), int64_t(30)}) mask_.slice(1, begin, begin + 5).zero_();
  }
  void TearDown() override {
    unsetenv("HS_SYNC_INPUTS");
    adapter_.reset();
    model_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  Result run(bool blocking) {
    if (blocking)
      setenv("HS_SYNC_INPUTS", "1", 1);
    else
      unsetenv("HS_SYNC_INPUTS");
    for (auto& nt : adapter_->trainable()) nt.tensor.mutable_grad() = at::Tensor();
    hs::model::Inputs in;
    in.input_ids = ids_;
    in.cu_seqlens = cu_seqlens_;
    auto ls = model_->loss(in, mask_);
    ls.sum.backward();
    Result r;
    r.loss = ls.sum.detach().clone();
    r.count = ls.count;
    for (auto& nt : adapter_->trainable()) r.grads.push_back(nt.tensor.grad().detach().clone());
    return r;
  }

  std::string dir_;
  std::unique_ptr<hs::model::Model> model_;
  std::optional<hs::lora::Adapter> adapter_;
  at::Tensor ids_, cu_seqlens_, mask_;
};

TEST_F(InputPath, HostIndexedLossEqualsTheBlockingPathBitForBit) {
  const Result fast = run(false), slow = run(true);
  // Trained targets: t in [1, T) with mask[t] and t not a sample's first token: 95 - 9 masked - t = 61.
  EXPECT_EQ(fast.count, kTokens - 1 - 9 - 1);
  EXPECT_EQ(fast.count, slow.count);
  EXPECT_TRUE(at::equal(fast.loss, slow.loss)) << fast.loss.item<double>() << " vs " << slow.loss.item<double>();
  ASSERT_EQ(fast.grads.size(), slow.grads.size());
  ASSERT_FALSE(fast.grads.empty());
  for (size_t i = 0; i < fast.grads.size(); ++i) {
    EXPECT_GT(fast.grads[i].abs().max().item<double>(), 0.0) << "LoRA gradient " << i << " is all zero";
    EXPECT_TRUE(at::equal(fast.grads[i], slow.grads[i])) << "LoRA gradient " << i << " differs";
  }
}

TEST_F(InputPath, OutOfVocabularyIdsGiveTheSameErrorOnBothPaths) {
  ids_[0][40] = kVocab + 3;
  std::string messages[2];
  for (int blocking = 0; blocking < 2; ++blocking) {
    try {
      run(blocking == 1);
      ADD_FAILURE() << "no error for token id " << kVocab + 3;
    } catch (const hs::Error& e) {
      messages[blocking] = e.message() + " | " + e.hint_text();
    }
  }
  EXPECT_EQ(messages[0], messages[1]);
  EXPECT_NE(messages[0].find("token id 131 is outside the vocabulary [0, 128)"), std::string::npos) << messages[0];
}

}  // namespace
