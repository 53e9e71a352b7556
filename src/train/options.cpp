// from_config(): every `hsloth train` key read once, by name, into TrainOptions, and the checks that are
// about option values (warmup longer than max_steps) made here with the same
// messages the trainer gave before; the trainer reads only the typed fields.
#include "train/options.h"

#include <algorithm>

#include "config/config.h"
#include "core/error.h"
#include "core/log.h"

namespace hs::train {

const char* packing_name(data::Packing p) { return p == data::Packing::padded ? "padded" : "packed"; }

void check_warmup(const ScheduleOptions& s, int64_t total_steps) {
  const int64_t warmup = s.warmup_steps;
  if (warmup <= total_steps) return;
  const std::string steps = s.max_steps > 0
                                ? hs::str("train.max_steps = ", total_steps)
                                : hs::str(total_steps, " steps (train.epochs = ", s.epochs_text, ")");
  const std::string fix =
      hs::str("set --train.warmup_steps to at most ", total_steps, " (e.g. ",
              std::max<int64_t>(1, total_steps / 10), ", about 10% of the run), or run longer");
  if (!s.warmup_origin.empty())
    throw Error(hs::str("train.warmup_steps = ", warmup, " is more than the run's ", steps,
                        ": the learning rate would never reach train.lr"))
        .at(s.warmup_origin)
        .hint(fix);
  log::warn("train.warmup_steps = ", warmup, " (default) is more than the run's ", steps,
            ": the learning rate never reaches train.lr; ", fix);
}

TrainOptions from_config(const config::Config& cfg) {
  TrainOptions o;
  const std::string finetune = cfg.get("finetune");
  o.finetune = finetune == "full" ? Finetune::full : finetune == "qlora" ? Finetune::qlora : Finetune::lora;
  o.run_dir = cfg.get("run.dir");
  o.seed = uint64_t(cfg.get_int("train.seed"));

  o.model.path = cfg.get("model.path");
  o.model.dtype = cfg.get("model.dtype");
  o.model.grad_ckpt = parse_grad_ckpt(cfg.get("train.grad_ckpt"));

  o.data.train = cfg.get("data.train");
  if (cfg.has("data.eval")) o.data.eval = cfg.get("data.eval");
  o.data.eval_fraction = cfg.get_real("data.eval_fraction");

  o.lora.r = cfg.get_int("lora.r");
  o.lora.alpha = cfg.get_real("lora.alpha");
  o.lora.dropout = cfg.get_real("lora.dropout");
  o.lora.use_rslora = cfg.get_bool("lora.rslora");
  o.lora.targets = lora::parse_targets(cfg.get_list("lora.targets"));
  o.lora.base_model_name_or_path = o.model.path;

  o.plan.tokens_per_batch = cfg.get_int("train.tokens_per_batch");
  o.plan.grad_accum = int(cfg.get_int("train.grad_accum"));
  o.plan.packing = data::parse_packing(cfg.get("train.packing"));

  o.optimizer.adamw = AdamWConfig{cfg.get_real("train.beta1"), cfg.get_real("train.beta2"),
                                  cfg.get_real("train.eps"), cfg.get_real("train.weight_decay")};
  o.optimizer.max_grad_norm = cfg.get_real("train.max_grad_norm");
  const std::string gs = cfg.get("train.grad_sum");
  o.optimizer.grad_sum = gs == "fp64" ? GradSum::fp64 : gs == "fp32" ? GradSum::fp32 : GradSum::auto_;

  o.schedule.kind = parse_schedule(cfg.get("train.schedule"));
  o.schedule.lr = cfg.get_real("train.lr");
  o.schedule.warmup_steps = cfg.get_int("train.warmup_steps");
  o.schedule.max_steps = cfg.get_int("train.max_steps");
  o.schedule.epochs = cfg.get_real("train.epochs");
  o.schedule.epochs_text = cfg.get("train.epochs");
  if (cfg.given("train.warmup_steps")) o.schedule.warmup_origin = cfg.origin("train.warmup_steps");

  o.checkpoint.every = cfg.get_int("ckpt.every");
  o.checkpoint.keep = int(cfg.get_int("ckpt.keep"));
  o.checkpoint.resume = cfg.get("train.resume");

  o.eval.every = cfg.get_int("eval.every");
  o.eval.exact_match = cfg.get_bool("eval.exact_match");
  o.eval.max_samples = cfg.get_int("eval.max_samples");
  o.log.every = cfg.get_int("log.every");
  o.dist.check_every = cfg.get_int("dist.check_every");
  o.dist.bucket_mb = cfg.get_real("dist.bucket_mb");
  o.dist.shard_optimizer = cfg.get_bool("dist.shard_optimizer");

  // A given warmup longer than max_steps is an error before anything loads; the default's warning (and the
  // check against the steps of train.epochs epochs) comes from the trainer once it knows the run's steps.
  if (o.schedule.max_steps > 0 && !o.schedule.warmup_origin.empty())
    check_warmup(o.schedule, o.schedule.max_steps);
  o.resolved_ini = cfg.to_ini();
  return o;
}

}  // namespace hs::train
