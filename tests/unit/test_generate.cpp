// model/generate against a reference that recomputes the whole sequence in float64 without a KV cache
// (the model loaded as float64, the full forward's last row each step): greedy tokens agree, the
// exact-match check accepts exactly the greedy continuation, sampling is seeded, eos stops generation.
#include <ATen/ATen.h>
#include <ftw.h>

#include <set>
#include <string>
#include <vector>

#include "model/generate.h"
#include "model/model.h"
#include "support/test_support.h"
#include "tiny_llama.h"

namespace {
using namespace hs::model;

class Generate : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = hs::test::temp_dir("hs-generate");
    hs::test::write_tiny_llama(dir_, 3);
  }
  void TearDown() override {
    nftw(
        dir_.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 8,
        FTW_DEPTH | FTW_PHYS);
  }
  // Greedy continuation by full recomputation in float64 (no cache).
  std::vector<int64_t> reference_greedy(const std::vector<int64_t>& prompt, int n) const {
    Model m = Model::load(dir_, {at::kDouble, at::kCPU});
    at::NoGradGuard g;
    std::vector<int64_t> seq = prompt, out;
    for (int k = 0; k < n; ++k) {
      Inputs in;
      in.input_ids = at::tensor(seq, at::kLong).view({1, -1});
      const int64_t next = m.forward(in)[0][-1].argmax().item<int64_t>();
      out.push_back(next);
      seq.push_back(next);
    }
    return out;
  }
  std::string dir_;
};

TEST_F(Generate, GreedyMatchesFullRecomputationAndExactMatchAcceptsOnlyIt) {
  const std::vector<int64_t> prompt = {3, 17, 5, 29, 11};
  const std::vector<int64_t> want = reference_greedy(prompt, 8);
  Model m = Model::load(dir_, {at::kFloat, at::kCPU});
  at::NoGradGuard g;
  Sampling greedy;
  greedy.greedy = true;
  int calls = 0;
  Generated got = generate(m, prompt, 8, greedy, 0, {}, at::kCPU, [&](int64_t) { ++calls; });
  ASSERT_EQ(got.tokens.size(), want.size());
  for (size_t k = 0; k < want.size(); ++k) EXPECT_EQ(got.tokens[k], want[k]) << "token " << k;
  EXPECT_EQ(calls, 8);
  EXPECT_EQ(got.stop, "max-new");

  EXPECT_TRUE(greedy_reproduces(m, prompt, want, at::kCPU));
  std::vector<int64_t> wrong = want;
  wrong.back() = (wrong.back() + 1) % 40;
  EXPECT_FALSE(greedy_reproduces(m, prompt, wrong, at::kCPU));
  wrong = want;
  wrong.front() = (wrong.front() + 1) % 40;
  EXPECT_FALSE(greedy_reproduces(m, prompt, wrong, at::kCPU));
}

TEST_F(Generate, EosStopsAndSamplingFollowsItsSeed) {
  const std::vector<int64_t> prompt = {1, 2, 3};
  Model m = Model::load(dir_, {at::kFloat, at::kCPU});
  at::NoGradGuard g;
  Sampling s;
  s.temperature = 1.5;
  s.top_p = 1.0;
  Generated a = generate(m, prompt, 24, s, 1234, {}, at::kCPU);
  Generated b = generate(m, prompt, 24, s, 1234, {}, at::kCPU);
  Generated c = generate(m, prompt, 24, s, 99, {}, at::kCPU);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_NE(a.tokens, c.tokens);
  // Stopping at the fifth token when it is an eos id.
  Generated e = generate(m, prompt, 24, s, 1234, {int64_t(a.tokens[4])}, at::kCPU);
  size_t first = 0;
  while (a.tokens[first] != a.tokens[4]) ++first;
  EXPECT_EQ(e.stop, "eos");
  EXPECT_EQ(e.tokens.size(), first + 1);
  // top-k 1 is greedy whatever the temperature.
  Sampling k1 = s;
  k1.top_k = 1;
  Sampling greedy;
  greedy.greedy = true;
  EXPECT_EQ(generate(m, prompt, 6, k1, 5, {}, at::kCPU).tokens,
            generate(m, prompt, 6, greedy, 0, {}, at::kCPU).tokens);
}

}  // namespace
