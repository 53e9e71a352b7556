// The `hsloth train` schema: every key with its default, range or choices and help text, declared once so
// `--help`, validation and config.resolved.ini agree. LoRA target names come from model/names (torch-free),
// not spelled here.
#include "config/schemas.h"

#include "model/names.h"

namespace hs::config {

const Schema& train_schema() {
  static const Schema schema = [] {
    Schema s("train", "--config run.ini [--section.key value ...]",
             "Fine-tune a Llama-family model (LoRA, QLoRA or full) on pre-tokenized HDF5 shards.\n"
             "Launch with `mpirun -np N hsloth train ...` for N ranks (one GPU each); the global batch is\n"
             "train.tokens_per_batch x train.grad_accum x N tokens.");
    s.choice("finetune", "lora", {"lora", "qlora", "full"}, "what to train: LoRA adapters, LoRA on a 4-bit NF4 base, or all weights");
    s.input_path("model.path", "", "HF model folder (config.json + *.safetensors + tokenizer.json)", true);
    s.choice("model.dtype", "auto", {"auto", "bf16", "bfloat16", "fp32", "float32"},
             "compute dtype: auto = bf16 on GPU, fp32 on CPU");
    s.input_path("data.train", "", "shard folder made by `hsloth prep`", true);
    s.input_path("data.eval", "", "shard folder for evaluation (empty: hold out data.eval_fraction of train)");
    s.real("data.eval_fraction", 0.0, "fraction of train samples held out for eval when data.eval is empty", 0, 0.5);
    s.path("run.dir", "runs/run", "output folder: config.resolved.ini, metrics.jsonl, checkpoints/, final/");
    s.integer("lora.r", 16, "LoRA rank", 1, 4096);
    s.real("lora.alpha", 32, "LoRA alpha (scaling = alpha / r, or alpha / sqrt(r) with rslora)", 0, 1e9);
    s.real("lora.dropout", 0.0, "dropout on the LoRA input", 0, 1);
    s.list("lora.targets", model::proj_names(" "), "projections that get adapters", model::proj_names());
    s.boolean("lora.rslora", false, "rank-stabilized scaling alpha / sqrt(r)");
    s.real("train.lr", 2e-4, "peak learning rate", 0, 10);
    s.choice("train.schedule", "cosine", {"constant", "linear", "cosine"}, "learning-rate schedule after warmup");
    s.integer("train.warmup_steps", 10, "linear warmup steps", 0);
    s.integer("train.max_steps", 0, "optimizer steps (0: run train.epochs epochs)", 0);
    s.real("train.epochs", 1, "epochs over the training shards when max_steps is 0", 0);
    s.integer("train.tokens_per_batch", 8192, "tokens per micro-batch per rank (packed rows or padded)", 16);
    s.integer("train.grad_accum", 1, "micro-batches accumulated per optimizer step", 1);
    s.real("train.max_grad_norm", 1.0, "gradient-norm clipping (0: off)", 0);
    s.real("train.weight_decay", 0.0, "AdamW weight decay", 0);
    s.real("train.beta1", 0.9, "AdamW beta1", 0, 1);
    s.real("train.beta2", 0.999, "AdamW beta2", 0, 1);
    s.real("train.eps", 1e-8, "AdamW epsilon", 0, 1);
    s.integer("train.seed", 42, "seed for LoRA init, dropout and batch order");
    s.choice("train.packing", "packed", {"packed", "padded"}, "several samples per row (attention never crosses them) or one padded sample per row");
    s.choice("train.grad_sum", "auto", {"auto", "fp64", "fp32"},
             "dtype in which gradients are summed over micro-batches and ranks: fp64 makes the step's gradient "
             "the same for any split over grad_accum and ranks (auto: fp64 up to 256M trainable parameters)");
    s.choice("train.grad_ckpt", "off", {"off", "on", "offload"}, "gradient checkpointing per decoder layer (offload: activations to host memory)");
    s.choice("train.plan_check", "on", {"on", "off"},
             "before loading weights, predict the peak GPU memory as `hsloth plan` does and stop (with the "
             "changes that fit) when it exceeds the GPU's free memory by more than 5%; off: run anyway");
    s.str("train.resume", "off", "off | auto (newest valid checkpoint in run.dir) | PATH to a checkpoint folder");
    s.integer("eval.every", 0, "evaluate every N steps (0: before training and at the end only)", 0);
    s.boolean("eval.exact_match", false,
              "also greedy-decode the last trained span of each eval sample and report exact-match accuracy");
    s.integer("eval.max_samples", 0, "eval samples used for exact-match (0: all)", 0);
    s.integer("ckpt.every", 0, "checkpoint every N steps (0: only at the end and on SIGTERM/SIGUSR1)", 0);
    s.integer("ckpt.keep", 3, "checkpoints to keep", 1);
    s.integer("log.every", 1, "progress line and metrics.jsonl record every N steps", 1);
    s.integer("dist.check_every", 100,
              "multi-rank runs: every N steps (and at the end) check that all ranks hold identical parameters "
              "(0: never)", 0);
    s.real("dist.bucket_mb", 25,
           "multi-rank runs: gradients are all-reduced in buckets of this many MB, each started as soon as "
           "backward has produced it (on GPUs overlapped with the rest of backward); 0: one all-reduce after "
           "backward", 0, 1e6);
    s.boolean("dist.shard_optimizer", false,
              "full fine-tuning on several ranks: split the fp32 master weights and AdamW moments across ranks "
              "(ZeRO-1: reduce-scatter of gradients, each rank updates its shard, all-gather of the weights)");
    return s;
  }();
  return schema;
}

}  // namespace hs::config
