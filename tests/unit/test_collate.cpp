// data::collate_rows(): a BatchPlan micro-batch laid out as model rows, checked against layouts written out
// here from the raw samples (not read back through the code under test): packed = the samples back to back in
// plan order with cu_seqlens at their starts; padded = one sample per row, then zeros with mask 0. Also:
// every micro-batch of a real plan holds its samples' tokens exactly once, and a plan that no longer fits
// the shards is an error, not a write past the row.
#include <filesystem>
#include <numeric>

#include "core/error.h"
#include "data/batch_plan.h"
#include "data/collate.h"
#include "data/shard_index.h"
#include "data/shard_writer.h"
#include "support/test_support.h"

namespace fs = std::filesystem;
using namespace hs::data;

namespace {

struct Shards {
  std::string dir = hs::test::temp_dir("hs-collate");
  std::vector<std::vector<int32_t>> ids;  // by shard order: sample i has length i + 1 (distinct lengths)
  std::vector<std::vector<uint8_t>> mask;
  ~Shards() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  explicit Shards(int n) {
    SampleSet set;
    ids.resize(size_t(n));
    mask.resize(size_t(n));
    for (int k = n - 1; k >= 0; --k) {  // added longest first: the shards sort by length
      for (int t = 0; t <= k; ++t) {
        ids[size_t(k)].push_back(1000 * (k + 1) + t);
        mask[size_t(k)].push_back(uint8_t(t % 3 != 0));
      }
      set.add(ids[size_t(k)], mask[size_t(k)], k);
    }
    ShardMeta m;
    m.tokenizer_name = "unit-tok";
    m.tokenizer_sha256 = std::string(64, 'a');
    m.vocab_size = 100000;
    m.template_name = "chatml";
    m.loss_policy = "response";
    m.formats = "alpaca";
    m.created_by = "hsloth test";
    WriteOptions o;
    o.shard_tokens = 20;  // several shard files
    write_shard_set(dir + "/s", set, m, o, {{"input_records", n}});
  }
};

MicroBatch micro(const ShardIndex& idx, std::vector<int64_t> samples) {
  MicroBatch mb;
  mb.samples = std::move(samples);
  for (int64_t id : mb.samples) {
    mb.tokens += idx.length(id);
    mb.row_len = std::max<int64_t>(mb.row_len, idx.length(id));
  }
  mb.rows = int64_t(mb.samples.size());
  return mb;
}

TEST(BatchPlanCollate, PackedIsOneRowWithSampleStarts) {
  Shards sh(9);
  ShardIndex idx = ShardIndex::open(sh.dir + "/s");
  ASSERT_EQ(idx.length(4), 5);  // the oracle's assumption: shard order = length order
  MicroBatch mb = micro(idx, {4, 0, 7});
  Collated c = collate_rows(idx, mb, Packing::packed);
  std::vector<int64_t> want_ids;
  std::vector<uint8_t> want_mask;
  for (int s : {4, 0, 7}) {
    want_ids.insert(want_ids.end(), sh.ids[size_t(s)].begin(), sh.ids[size_t(s)].end());
    want_mask.insert(want_mask.end(), sh.mask[size_t(s)].begin(), sh.mask[size_t(s)].end());
  }
  EXPECT_EQ(c.rows, 1);
  EXPECT_EQ(c.row_len, 5 + 1 + 8);
  EXPECT_EQ(c.ids, want_ids);
  EXPECT_EQ(c.mask, want_mask);
  EXPECT_EQ(c.cu_seqlens, (std::vector<int64_t>{0, 5, 6, 14}));
}

TEST(BatchPlanCollate, PaddedIsOneRowPerSamplePaddedAfter) {
  Shards sh(9);
  ShardIndex idx = ShardIndex::open(sh.dir + "/s");
  MicroBatch mb = micro(idx, {5, 2});  // lengths 6 and 3: rows of 6
  Collated c = collate_rows(idx, mb, Packing::padded);
  EXPECT_EQ(c.rows, 2);
  EXPECT_EQ(c.row_len, 6);
  std::vector<int64_t> want_ids(sh.ids[5].begin(), sh.ids[5].end());
  std::vector<uint8_t> want_mask = sh.mask[5];
  want_ids.insert(want_ids.end(), sh.ids[2].begin(), sh.ids[2].end());
  want_mask.insert(want_mask.end(), sh.mask[2].begin(), sh.mask[2].end());
  want_ids.resize(12, 0);
  want_mask.resize(12, 0);
  EXPECT_EQ(c.ids, want_ids);
  EXPECT_EQ(c.mask, want_mask);
  EXPECT_TRUE(c.cu_seqlens.empty());
}

TEST(BatchPlanCollate, EveryPlannedMicroBatchHoldsItsSamplesOnce) {
  Shards sh(30);
  ShardIndex idx = ShardIndex::open(sh.dir + "/s");
  std::vector<int64_t> ids(30);
  std::iota(ids.begin(), ids.end(), 0);
  for (Packing packing : {Packing::packed, Packing::padded}) {
    PlanOptions o;
    o.tokens_per_batch = 64;
    o.packing = packing;
    o.world_size = 2;
    BatchPlan p = BatchPlan::build(idx.lengths(), idx.trained(), ids, o);
    int64_t tokens = 0, targets = 0;
    for (const auto& mb : p.micro_batches()) {
      Collated c = collate_rows(idx, mb, packing);
      ASSERT_EQ(int64_t(c.ids.size()), mb.padded_tokens());
      int64_t real = 0, trained = 0;
      for (size_t i = 0; i < c.ids.size(); ++i) real += c.ids[i] != 0, trained += c.mask[i];
      EXPECT_EQ(real, mb.tokens);
      EXPECT_EQ(trained, mb.trained);
      tokens += real;
      targets += trained;
    }
    EXPECT_EQ(tokens, 30 * 31 / 2);
    EXPECT_EQ(targets, idx.num_trained());
  }
}

TEST(BatchPlanCollate, APlanThatNoLongerFitsIsAnError) {
  Shards sh(9);
  ShardIndex idx = ShardIndex::open(sh.dir + "/s");
  MicroBatch mb = micro(idx, {3, 8});
  mb.tokens = 6;  // planned from other lengths: sample 8 (9 tokens) does not fit
  try {
    collate_rows(idx, mb, Packing::packed);
    ADD_FAILURE() << "expected an hs::Error";
  } catch (const hs::Error& e) {
    EXPECT_NE(std::string(e.what()).find("sample 8 has 9 tokens"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("re-run hsloth prep"), std::string::npos) << e.what();
  }
}

}  // namespace
