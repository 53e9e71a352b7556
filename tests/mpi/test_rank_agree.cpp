// dist::check_ranks_agree across real ranks when they agree (notes, which are not compared, may differ), and
// the message rank 0 builds when they do not (describe_disagreement; the disagreeing job itself is tested end
// to end by rank_agree.py, since it ends with MPI_Abort).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "dist/agree.h"
#include "dist/mpi_runtime.h"

namespace {
using hs::dist::Fact;

TEST(RankAgree, EqualFactsPassWhateverTheNotes) {
  const std::string note = "rank " + std::to_string(hs::dist::Mpi::rank());
  std::vector<Fact> facts{{"config", "lora.r", "16", note},
                          {"model", "config.json num_hidden_layers", "2", note}};
  EXPECT_NO_THROW(hs::dist::check_ranks_agree(facts, "in a test"));
  EXPECT_NO_THROW(hs::dist::check_ranks_agree({}, "with no facts"));
}

TEST(RankAgree, MessageNamesTheKeyBothValuesAndTheRanks) {
  std::vector<Fact> a{{"config", "lora.r", "16", "default"}, {"config", "train.max_steps", "10", ""}},
      b{{"config", "lora.r", "8", "command line"}, {"config", "train.max_steps", "10", ""}};
  std::string m = hs::dist::describe_disagreement(a, b, 1, {1});
  EXPECT_EQ(m, "lora.r: rank 0 has 16 (default), rank 1 has 8 (command line)");
  EXPECT_EQ(hs::dist::describe_disagreement(a, a, 1, {1}), "");
}

TEST(RankAgree, MissingKeysAndSeveralRanks) {
  std::vector<Fact> a{{"model", "weight x", "F32 [2]", ""}}, b{{"model", "weight y", "F32 [3]", ""}};
  std::string m = hs::dist::describe_disagreement(a, b, 2, {2, 3});
  EXPECT_NE(m.find("weight x: rank 0 has F32 [2], rank 2 has nothing (absent)"), std::string::npos) << m;
  EXPECT_NE(m.find("weight y: rank 0 has nothing (absent), rank 2 has F32 [3]"), std::string::npos) << m;
  EXPECT_NE(m.find("ranks 2, 3 differ from rank 0"), std::string::npos) << m;
}

}  // namespace
