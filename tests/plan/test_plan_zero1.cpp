// The plan's ZeRO-1 terms (dist.shard_optimizer, full fine-tuning) against the state a real train::Zero1
// keeps under mpiexec -n 2: the shard size, the fp32 master shard, the padded flat gradient, the
// reduced-gradient shard, the AdamW moments made on the shard and the fp64 sum the trainer pads to the
// shards.
#include <ATen/ATen.h>

#include "dist/communicator.h"
#include "dist/mpi_runtime.h"
#include "io/hf_config.h"
#include "model/model.h"
#include "plan/plan.h"
#include "support/test_support.h"
#include "tests/plan/plan_models.h"
#include "train/adamw.h"
#include "train/flat_params.h"
#include "train/zero1.h"

namespace {

using namespace hs;

const plan::Term* find_term(const std::vector<plan::Term>& ts, const std::string& prefix) {
  for (const auto& t : ts)
    if (t.name.rfind(prefix, 0) == 0) return &t;
  return nullptr;
}

TEST(PlanZero1, ShardedStateMatchesZero1) {
  ASSERT_TRUE(dist::Mpi::active());
  auto comm = dist::make_communicator(at::Device(at::kCPU));
  const int world = comm->world();
  ASSERT_GE(world, 2);
  // Hidden 64 and 3 layers: ~80k parameters, so the 1024-value norm chunks pad the last shard.
  const char* cfg = R"({"model_type":"llama","hidden_size":64,"intermediate_size":96,"num_hidden_layers":3,
    "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":101,"rms_norm_eps":1e-5,
    "max_position_embeddings":128,"tie_word_embeddings":false})";
  const std::string dir = test::write_plan_model("zero1_rank" + std::to_string(comm->rank()), cfg);
  const io::HfConfig c = io::load_hf_config(dir);
  model::Model m = model::Model::load(dir, {});
  m.set_full_finetune(true);
  std::vector<at::Tensor> params;
  std::vector<std::string> names;
  for (auto& nt : m.named_parameters()) {
    params.push_back(nt.tensor);
    names.push_back(nt.name);
  }
  std::vector<at::Tensor*> slots;
  for (auto& t : params) slots.push_back(&t);
  // As the trainer makes them under ZeRO-1: no flat buffers, the fp64 sum (train.grad_sum = fp64).
  train::FlatParams flat(slots, names, at::kCPU, /*alias_fp32=*/false, /*flat_buffers=*/false);
  train::Zero1 zero(flat, *comm, /*fp64_sum=*/true);
  train::AdamW opt(flat.master(), {});

  plan::RunSpec s;
  s.finetune = plan::Finetune::full;
  s.world = world;
  s.shard_optimizer = true;
  s.grad_sum = plan::GradSum::fp64;
  s.tokens_per_batch = 64;
  plan::Samples data;
  data.lengths.assign(8, 32);
  data.trained.assign(8, 31);
  const plan::Plan p = plan::estimate(c, s, data, std::nullopt);
  EXPECT_EQ(p.trainable, flat.numel());
  EXPECT_EQ(p.shard, zero.shard_numel());
  EXPECT_EQ(flat.grad().numel(), 0);  // no flat fp32 gradient under ZeRO-1
  EXPECT_EQ(find_term(p.memory.states, "flat fp32 gradient"), nullptr);
  EXPECT_DOUBLE_EQ(find_term(p.memory.states, "fp32 master: this rank's shard")->value,
                   double(flat.master().nbytes()));
  EXPECT_DOUBLE_EQ(find_term(p.memory.states, "reduced gradient: this rank's shard")->value,
                   double(zero.grad_shard().nbytes()));
  EXPECT_DOUBLE_EQ(find_term(p.memory.states, "AdamW moments: this rank's shard")->value,
                   double(opt.exp_avg().nbytes() + opt.exp_avg_sq().nbytes()));
  // The fp64 sum in the padded section layout and the staging buffer: what Zero1 allocated.
  EXPECT_DOUBLE_EQ(find_term(p.memory.states, "fp64 gradient sum")->value, double(zero.fp64_sum_bytes()));
  EXPECT_DOUBLE_EQ(find_term(p.memory.states, "staging buffer")->value, double(zero.staging_bytes()));
  // Unsharded, the same run keeps the whole master and moments: more memory, and the all-reduce in place of
  // reduce-scatter + all-gather.
  s.shard_optimizer = false;
  const plan::Plan whole = plan::estimate(c, s, data, std::nullopt);
  EXPECT_DOUBLE_EQ(find_term(whole.memory.states, "fp32 master copy")->value, 4.0 * double(flat.numel()));
  EXPECT_GT(whole.memory.peak, p.memory.peak);
  EXPECT_EQ(whole.shard, 0);
}

}  // namespace
