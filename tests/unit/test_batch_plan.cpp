// BatchPlan properties: every sample exactly once per epoch, capacity respected, best-fit decreasing close
// to the bin-count lower bound, deterministic for a seed and different across epochs, steps dealt to ranks
// with balanced tokens (micro-batches filled evenly over whole steps when a step takes several; -np 1 with
// grad_accum 4 runs the same steps as -np 4), the step's trained-token count equal to the sum over its micro-batches, and the
// shuffle's generator pinned to the value the C++ standard gives for mt19937_64.
#include <algorithm>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "core/error.h"
#include "data/batch_plan.h"
#include "support/test_support.h"

namespace {
using hs::data::BatchPlan;
using hs::data::Packing;
using hs::data::PlanOptions;

struct Data {
  std::vector<int32_t> lengths, trained;
  std::vector<int64_t> ids;
};

Data random_data(int n, uint64_t seed, int max_len = 900) {
  std::mt19937_64 rng(seed);
  Data d;
  for (int i = 0; i < n; ++i) {
    int len = 2 + int(rng() % uint64_t(max_len));
    d.lengths.push_back(len);
    d.trained.push_back(int(rng() % uint64_t(len)));
    d.ids.push_back(i);
  }
  return d;
}

TEST(BatchPlan, GeneratorIsTheStandardMt19937_64) {
  // [rand.predef]: the 10000th consecutive invocation of a default-constructed mt19937_64 produces this.
  std::mt19937_64 g;
  g.discard(9999);
  EXPECT_EQ(g(), 9981545732273789042ull);
}

TEST(BatchPlan, PortableShuffleIsAPermutationAndSeeded) {
  std::vector<int64_t> a(1000), b;
  std::iota(a.begin(), a.end(), 0);
  b = a;
  auto c = a;
  hs::data::portable_shuffle(a, 7);
  hs::data::portable_shuffle(b, 7);
  hs::data::portable_shuffle(c, 8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  auto s = a;
  std::sort(s.begin(), s.end());
  for (int64_t i = 0; i < 1000; ++i) EXPECT_EQ(s[size_t(i)], i);
  // Uniformity: each of 6 permutations of 3 elements about 1/6 of the time over 6000 seeds.
  std::map<std::vector<int64_t>, int> counts;
  for (uint64_t seed = 0; seed < 6000; ++seed) {
    std::vector<int64_t> v{0, 1, 2};
    hs::data::portable_shuffle(v, seed);
    counts[v]++;
  }
  ASSERT_EQ(counts.size(), 6u);
  for (auto& [perm, n] : counts) EXPECT_NEAR(n, 1000, 150);
}

TEST(BatchPlan, PackedCoversEverySampleOnceWithinCapacity) {
  Data d = random_data(2000, 1);
  PlanOptions o;
  o.tokens_per_batch = 4096;
  BatchPlan p = BatchPlan::build(d.lengths, d.trained, d.ids, o);
  std::vector<int> seen(d.lengths.size(), 0);
  int64_t total = 0;
  for (const auto& mb : p.micro_batches()) {
    int64_t tok = 0, tr = 0;
    for (int64_t id : mb.samples) {
      seen[size_t(id)]++;
      tok += d.lengths[size_t(id)];
      tr += d.trained[size_t(id)];
    }
    EXPECT_LE(tok, 4096);
    EXPECT_EQ(tok, mb.tokens);
    EXPECT_EQ(tr, mb.trained);
    EXPECT_EQ(mb.rows, 1);
    total += tok;
  }
  for (int s : seen) EXPECT_EQ(s, 1);
  // Best-fit decreasing stays close to the lower bound ceil(total / capacity).
  const int64_t lower = (total + 4095) / 4096;
  EXPECT_LE(int64_t(p.micro_batches().size()), lower + lower / 50 + 1);
}

TEST(BatchPlan, PaddedRowsFitTheBudget) {
  Data d = random_data(500, 2);
  PlanOptions o;
  o.tokens_per_batch = 4096;
  o.packing = Packing::padded;
  BatchPlan p = BatchPlan::build(d.lengths, d.trained, d.ids, o);
  std::set<int64_t> seen;
  for (const auto& mb : p.micro_batches()) {
    EXPECT_LE(mb.padded_tokens(), 4096);
    EXPECT_EQ(mb.rows, int64_t(mb.samples.size()));
    for (int64_t id : mb.samples) {
      EXPECT_LE(d.lengths[size_t(id)], mb.row_len);
      EXPECT_TRUE(seen.insert(id).second);
    }
  }
  EXPECT_EQ(seen.size(), d.lengths.size());
}

TEST(BatchPlan, EpochsAreSeededPermutationsOfTheSameMicroBatches) {
  Data d = random_data(300, 3);
  PlanOptions o;
  o.tokens_per_batch = 2048;
  o.grad_accum = 2;
  BatchPlan p = BatchPlan::build(d.lengths, d.trained, d.ids, o);
  BatchPlan q = BatchPlan::build(d.lengths, d.trained, d.ids, o);
  const int64_t spe = p.steps_per_epoch();
  std::vector<int64_t> e0, e1;
  for (int64_t s = 0; s < spe; ++s)
    for (int64_t m : p.step_batches(s, 0)) e0.push_back(m);
  for (int64_t s = spe; s < 2 * spe; ++s)
    for (int64_t m : p.step_batches(s, 0)) e1.push_back(m);
  EXPECT_EQ(int64_t(e0.size()), int64_t(p.micro_batches().size()));
  EXPECT_NE(e0, e1);
  auto s0 = e0, s1 = e1;
  std::sort(s0.begin(), s0.end());
  std::sort(s1.begin(), s1.end());
  EXPECT_EQ(s0, s1);
  for (int64_t s = 0; s < 2 * spe; ++s) EXPECT_EQ(p.step_batches(s, 0), q.step_batches(s, 0));
  o.seed = 43;
  BatchPlan r = BatchPlan::build(d.lengths, d.trained, d.ids, o);
  std::vector<int64_t> r0;
  for (int64_t s = 0; s < spe; ++s)
    for (int64_t m : r.step_batches(s, 0)) r0.push_back(m);
  EXPECT_NE(e0, r0);
}

TEST(BatchPlan, RanksGetBalancedTokensAndTheStepNormaliserIsGlobal) {
  Data d = random_data(3000, 4, 2000);
  PlanOptions o;
  o.tokens_per_batch = 8192;
  o.world_size = 4;
  o.grad_accum = 2;
  BatchPlan p = BatchPlan::build(d.lengths, d.trained, d.ids, o);
  double imbalance = 0;
  const int64_t spe = p.steps_per_epoch();
  std::set<int64_t> all;
  for (int64_t s = 0; s < spe; ++s) {
    int64_t trained = 0;
    std::vector<int64_t> per_rank;
    for (int r = 0; r < 4; ++r) {
      int64_t tok = 0;
      for (int64_t m : p.step_batches(s, r)) {
        EXPECT_TRUE(all.insert(m).second);
        trained += p.micro_batches()[size_t(m)].trained;
        tok += p.micro_batches()[size_t(m)].tokens;
      }
      per_rank.push_back(tok);
    }
    EXPECT_EQ(trained, p.step_trained(s));
    EXPECT_EQ(per_rank, p.step_tokens_per_rank(s));
    if (s + 1 < spe) {
      double mean = double(std::accumulate(per_rank.begin(), per_rank.end(), int64_t(0))) / 4;
      imbalance += double(*std::max_element(per_rank.begin(), per_rank.end())) / mean;
    }
  }
  EXPECT_EQ(all.size(), p.micro_batches().size());
  EXPECT_LT(imbalance / double(spe - 1), 1.05);  // the bound: mean max/mean under 5%
}

TEST(BatchPlan, SeveralMicroBatchesPerStepFillWholeStepsEvenly) {
  for (uint64_t seed : {6, 7, 8}) {
    Data d = random_data(700 + int(seed) * 37, seed, 1500);
    const int64_t total = std::accumulate(d.lengths.begin(), d.lengths.end(), int64_t(0));
    PlanOptions o;
    o.tokens_per_batch = 4096;
    o.world_size = 4;
    o.grad_accum = 2;
    BatchPlan p = BatchPlan::build(d.lengths, d.trained, d.ids, o);
    const auto& mbs = p.micro_batches();
    ASSERT_EQ(mbs.size() % 8, 0u);  // whole steps: no short last step
    std::vector<int> seen(d.lengths.size(), 0);
    int64_t most = 0, least = INT64_MAX;
    for (const auto& mb : mbs) {
      int64_t tok = 0;
      for (int64_t id : mb.samples) tok += d.lengths[size_t(id)], seen[size_t(id)]++;
      EXPECT_EQ(tok, mb.tokens);
      EXPECT_LE(tok, 4096);
      most = std::max(most, tok);
      least = std::min(least, tok);
    }
    for (int c : seen) EXPECT_EQ(c, 1);
    EXPECT_LE(int64_t(mbs.size()), ((total + 4095) / 4096 + 8) / 8 * 8 + 8);  // at most a step over the bound
    EXPECT_LT(double(most) / double(least), 1.10) << "micro-batches of " << least << ".." << most << " tokens";
    for (int64_t s = 0; s < p.steps_per_epoch(); ++s) {
      auto t = p.step_tokens_per_rank(s);
      EXPECT_LT(double(*std::max_element(t.begin(), t.end())) * 4 /
                    double(std::accumulate(t.begin(), t.end(), int64_t(0))),
                1.05);
    }
  }
}

TEST(BatchPlan, OneRankWithAccumulationRunsTheStepsOfManyRanks) {
  Data d = random_data(900, 9, 1200);
  PlanOptions one, four;
  one.tokens_per_batch = four.tokens_per_batch = 3000;
  one.grad_accum = 4;
  four.world_size = 4;
  BatchPlan a = BatchPlan::build(d.lengths, d.trained, d.ids, one);
  BatchPlan b = BatchPlan::build(d.lengths, d.trained, d.ids, four);
  ASSERT_EQ(a.micro_batches().size(), b.micro_batches().size());
  for (size_t i = 0; i < a.micro_batches().size(); ++i)
    EXPECT_EQ(a.micro_batches()[i].samples, b.micro_batches()[i].samples);
  for (int64_t s = 0; s < 2 * a.steps_per_epoch(); ++s) {
    auto mine = a.step_batches(s, 0);
    std::vector<int64_t> theirs;
    for (int r = 0; r < 4; ++r)
      for (int64_t m : b.step_batches(s, r)) theirs.push_back(m);
    std::sort(mine.begin(), mine.end());
    std::sort(theirs.begin(), theirs.end());
    EXPECT_EQ(mine, theirs) << "step " << s;
    EXPECT_EQ(a.step_trained(s), b.step_trained(s));
  }
}

TEST(BatchPlan, TooLongSampleNamesTheFix) {
  Data d = random_data(10, 5);
  d.lengths[3] = 5000;
  PlanOptions o;
  o.tokens_per_batch = 4096;
  try {
    BatchPlan::build(d.lengths, d.trained, d.ids, o);
    FAIL() << "expected an error";
  } catch (const hs::Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("sample 3 has 5000 tokens"), std::string::npos) << m;
    EXPECT_NE(m.find("train.tokens_per_batch"), std::string::npos) << m;
  }
}

// The hint names the longest sample (not the first one found) and how many do not fit (issue #10).
TEST(BatchPlan, TooLongSamplesNameTheLongestAndTheCount) {
  Data d = random_data(10, 5);
  d.lengths[2] = 4500;
  d.lengths[7] = 6000;
  d.lengths[9] = 5000;
  PlanOptions o;
  o.tokens_per_batch = 4096;
  try {
    BatchPlan::build(d.lengths, d.trained, d.ids, o);
    FAIL() << "expected an error";
  } catch (const hs::Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("3 sample(s) are longer than train.tokens_per_batch = 4096"), std::string::npos) << m;
    EXPECT_NE(m.find("sample 7 has 6000 tokens"), std::string::npos) << m;
    EXPECT_NE(m.find("raise train.tokens_per_batch to at least 6000"), std::string::npos) << m;
  }
}

}  // namespace

namespace {

// step_stats() is what the trainer logs and inspect prints: checked against the step's micro-batches read
// back through step_batches(), and the imbalance against its definition (largest rank / mean over ranks).
TEST(BatchPlan, StepStatsAreTheStepsMicroBatches) {
  Data d = random_data(500, 21, 1000);
  for (auto [world, accum] : {std::pair{1, 3}, {2, 2}, {3, 1}, {4, 2}}) {
    PlanOptions o;
    o.tokens_per_batch = 2500;
    o.world_size = world;
    o.grad_accum = accum;
    BatchPlan p = BatchPlan::build(d.lengths, d.trained, d.ids, o);
    int64_t all_mb = 0;
    for (int64_t s = 0; s < 2 * p.steps_per_epoch(); ++s) {
      auto st = p.step_stats(s);
      ASSERT_EQ(st.rank_tokens.size(), size_t(world));
      int64_t tok = 0, trained = 0, mbs = 0, largest = 0;
      for (int r = 0; r < world; ++r) {
        int64_t rt = 0;
        for (int64_t m : p.step_batches(s, r)) {
          rt += p.micro_batches()[size_t(m)].tokens;
          trained += p.micro_batches()[size_t(m)].trained;
        }
        EXPECT_EQ(st.rank_tokens[size_t(r)], rt);
        EXPECT_EQ(st.rank_micro_batches[size_t(r)], int64_t(p.step_batches(s, r).size()));
        mbs += int64_t(p.step_batches(s, r).size());
        tok += rt;
        largest = std::max(largest, rt);
      }
      EXPECT_EQ(st.tokens, tok);
      EXPECT_EQ(st.trained, trained);
      EXPECT_EQ(st.trained, p.step_trained(s));
      EXPECT_EQ(st.micro_batches, mbs);
      EXPECT_LE(st.micro_batches, int64_t(world) * accum);
      EXPECT_DOUBLE_EQ(st.imbalance, double(largest) * world / double(tok));
      if (world == 1) {
        EXPECT_EQ(st.imbalance, 1.0);
      }
      if (s < p.steps_per_epoch()) all_mb += st.micro_batches;
    }
    EXPECT_EQ(all_mb, int64_t(p.micro_batches().size())) << "world " << world << " accum " << accum;
  }
}

// Hand-computed: lengths 6 5 3 2 at a budget of 8, two ranks. Packed refills 2 bins evenly: [6 2] [5 3]
// (8 and 8 tokens, no padding); padded takes rows while rows x longest <= 8: [6] [5] [3 2] -> slots 6+5+6.
TEST(BatchPlan, PaddingFractionAndImbalanceByHand) {
  std::vector<int32_t> len = {3, 6, 2, 5}, tr = {1, 1, 1, 1};
  std::vector<int64_t> ids = {0, 1, 2, 3};
  PlanOptions o;
  o.tokens_per_batch = 8;
  o.world_size = 2;
  BatchPlan packed = BatchPlan::build(len, tr, ids, o);
  ASSERT_EQ(packed.micro_batches().size(), 2u);
  EXPECT_EQ(packed.padded_tokens(), 16);
  EXPECT_EQ(packed.padding_fraction(), 0.0);
  EXPECT_EQ(packed.step_stats(0).imbalance, 1.0);
  o.packing = Packing::padded;
  BatchPlan padded = BatchPlan::build(len, tr, ids, o);
  ASSERT_EQ(padded.micro_batches().size(), 3u);
  EXPECT_EQ(padded.padded_tokens(), 17);
  EXPECT_DOUBLE_EQ(padded.padding_fraction(), 1.0 - 16.0 / 17.0);
  // Step 0 holds two of the three micro-batches, one per rank; step 1 the last one on rank 0.
  auto last = padded.step_stats(1);
  EXPECT_EQ(last.micro_batches, 1);
  EXPECT_DOUBLE_EQ(last.imbalance, 2.0);  // one rank has all the tokens: max / mean = 2
}

}  // namespace
