// Trainer: one class, a fixed lifecycle (setup -> train -> evaluate -> save), every variant chosen by its
// TrainOptions (lora | full, packed | padded, schedules, checkpoint cadence; see options.h, built from the
// config by from_config()), never a copied recipe.
//
// Per optimizer step: the BatchPlan names this rank's micro-batches; each is read from the shards,
// collated (packed rows with cu_seqlens, or padded rows), run forward to a token-sum loss and backward
// with the loss divided by the step's *global* trained-token count, so the step loss is the mean over all
// its trained tokens whatever the packing, accumulation or world size. Gradients land in one flat fp32
// buffer (FlatParams), are all-reduced once, clipped like torch.nn.utils.clip_grad_norm_, and AdamW
// steps the flat master. Rank 0 writes metrics.jsonl, TensorBoard events, progress lines and checkpoints.
//
// Signals: SIGTERM, SIGUSR1 or a first SIGINT (Ctrl-C) ask for a stop at the next step boundary; the
// trainer checkpoints and returns kExitInterrupted (75). A second SIGINT ends the process at once, unsaved.
// Errors after a completed step that leave the state consistent (a sample that cannot be read, a non-finite
// loss or gradient, out of memory in a step) are agreed on by all ranks before the gradient all-reduce; the
// last completed step is saved as a checkpoint and the error says where, then the run ends non-zero.
// Ranks agree or stop: start-up facts (config, model, tokenizer, shards; see agreement.h) and, after the
// plan and the resume, the plan and the starting parameters are compared across ranks.
#pragma once

#include <memory>
#include <string>

#include "train/options.h"
#include "train/run_control.h"  // install_stop_handlers(), for `hsloth train`

namespace hs::dist {
class Communicator;
}

namespace hs::train {

inline constexpr int kExitInterrupted = 75;  // EX_TEMPFAIL: stopped by a signal, checkpoint written

struct EvalResult {
  double loss = 0;  // token-mean cross-entropy over trained tokens
  int64_t tokens = 0, samples = 0;
  double ppl() const;
  int64_t exact = 0, exact_total = 0;  // exact-match of greedy answers (when enabled)
};

class Trainer {
 public:
  Trainer(TrainOptions options, dist::Communicator& comm);
  ~Trainer();
  // Runs the whole lifecycle; returns the process exit code.
  int run();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace hs::train
