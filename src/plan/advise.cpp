// advise() of plan.h: the changes to a run that make it fit (or run faster), each planned whole, the one that
// fits with the least speed lost first. Single changes only (tokens per micro-batch with grad_accum raised to
// keep the global batch, checkpointing, a 4-bit base, more ranks instead of accumulation), plus
// checkpointing with a 4-bit base when no single change fits.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "plan/plan.h"

namespace hs::plan {
namespace {

int64_t longest(const Samples& s) {
  int64_t m = 0;
  for (int32_t n : s.lengths) m = std::max<int64_t>(m, n);
  return m;
}

std::optional<Plan> try_plan(const io::HfConfig& c, const RunSpec& s, const Samples& samples,
                             const std::optional<GpuSpec>& gpu) {
  try {
    return estimate(c, s, samples, gpu);
  } catch (const Error&) {
    return std::nullopt;  // e.g. a sample longer than the candidate's tokens_per_batch
  }
}

// The largest tokens_per_batch (a power-of-two fraction of the current one, at least the longest sample)
// that fits, with grad_accum (or the world size) raised so the global batch stays.
std::optional<Candidate> smaller_batch(const io::HfConfig& c, const Plan& base, const Samples& samples,
                                       bool more_ranks) {
  const RunSpec& s0 = base.spec;
  const int64_t floor_tokens = std::max<int64_t>(16, longest(samples));
  for (int64_t div = 2; div <= 1024; div *= 2) {
    RunSpec s = s0;
    s.tokens_per_batch = s0.tokens_per_batch / div;
    if (s.tokens_per_batch < floor_tokens) break;
    if (more_ranks)
      s.world = s0.world * int(div);
    else
      s.grad_accum = s0.grad_accum * int(div);
    auto p = try_plan(c, s, samples, base.gpu);
    if (!p || !p->fits) continue;
    Candidate k;
    k.change = more_ranks ? hs::str("--train.tokens_per_batch ", s.tokens_per_batch, ", ", s.world,
                                    " ranks (mpirun -np ", s.world, ")")
                          : hs::str("--train.tokens_per_batch ", s.tokens_per_batch, " --train.grad_accum ",
                                    s.grad_accum);
    k.why = more_ranks ? "the same global batch spread over more GPUs"
                       : "smaller micro-batches, the same global batch";
    k.plan = std::move(*p);
    return k;
  }
  return std::nullopt;
}

void add(std::vector<Candidate>& out, const io::HfConfig& c, const Plan& base, const Samples& samples,
         RunSpec s, std::string change, std::string why) {
  auto p = try_plan(c, s, samples, base.gpu);
  if (!p) return;
  out.push_back({std::move(change), std::move(why), std::move(*p)});
}

}  // namespace

std::vector<Candidate> advise(const io::HfConfig& c, const Plan& base, const Samples& samples) {
  std::vector<Candidate> out;
  if (!base.fits_known) return out;
  const RunSpec& s0 = base.spec;
  if (!base.fits) {
    if (auto k = smaller_batch(c, base, samples, false)) out.push_back(std::move(*k));
    if (base.speed.known)
      if (auto k = smaller_batch(c, base, samples, true)) out.push_back(std::move(*k));
    for (Ckpt ck : {Ckpt::on, Ckpt::offload})
      if (s0.grad_ckpt != ck) {
        RunSpec s = s0;
        s.grad_ckpt = ck;
        add(out, c, base, samples, s, hs::str("--train.grad_ckpt ", ckpt_name(ck)),
            ck == Ckpt::on ? "keep one input per layer, recompute the layer in the backward"
                           : "keep the layer inputs in host memory");
      }
    if (s0.finetune == Finetune::full) {
      // ZeRO-1 splits the fp32 master and the moments (12 B per parameter) over the ranks.
      for (int n : {2, 4, 8}) {
        RunSpec s = s0;
        s.world = std::max(s0.world, n);
        if (s.world == s0.world && s0.shard_optimizer) continue;
        s.shard_optimizer = true;
        const int more = s.world / s0.world;
        if (more > 1 && s0.grad_accum % more == 0) s.grad_accum = s0.grad_accum / more;
        const size_t before = out.size();
        add(out, c, base, samples, s,
            hs::str("--dist.shard_optimizer on, ", s.world, " ranks (mpirun -np ", s.world, ")",
                    s.grad_accum != s0.grad_accum ? hs::str(" --train.grad_accum ", s.grad_accum) : ""),
            s.world * s.grad_accum == s0.world * s0.grad_accum
                ? "fp32 master and AdamW moments split over the ranks (ZeRO-1), the same global batch"
                : "fp32 master and AdamW moments split over the ranks (ZeRO-1); a larger global batch");
        if (out.size() > before && out.back().plan.fits) break;
      }
    }
    if (s0.finetune != Finetune::qlora) {
      RunSpec s = s0;
      s.finetune = Finetune::qlora;
      add(out, c, base, samples, s, "--finetune qlora",
          s0.finetune == Finetune::full ? "LoRA on a 4-bit NF4 base instead of training every weight"
                                        : "the base's projections in 4-bit NF4");
    }
    bool any = false;
    for (const auto& k : out) any = any || k.plan.fits;
    if (!any && s0.grad_ckpt == Ckpt::off) {
      RunSpec s = s0;
      s.grad_ckpt = Ckpt::on;
      if (s0.finetune != Finetune::qlora) s.finetune = Finetune::qlora;
      add(out, c, base, samples, s,
          s0.finetune != Finetune::qlora ? "--finetune qlora --train.grad_ckpt on" : "--train.grad_ckpt on",
          "both");
    }
  } else if (base.speed.known) {
    // Fits: a faster setting that also fits (larger micro-batches in place of accumulation, no
    // recomputation).
    if (s0.grad_accum % 2 == 0) {
      RunSpec s = s0;
      s.tokens_per_batch *= 2;
      s.grad_accum /= 2;
      add(out, c, base, samples, s,
          hs::str("--train.tokens_per_batch ", s.tokens_per_batch, " --train.grad_accum ", s.grad_accum),
          "larger micro-batches, the same global batch");
    }
    if (s0.grad_ckpt != Ckpt::off) {
      RunSpec s = s0;
      s.grad_ckpt = Ckpt::off;
      add(out, c, base, samples, s, "--train.grad_ckpt off", "no recomputation");
    }
    const double keep = 1.10;  // suggest only what is clearly faster
    out.erase(std::remove_if(out.begin(), out.end(),
                             [&](const Candidate& k) {
                               return !k.plan.fits ||
                                      k.plan.speed.tokens_per_s < keep * base.speed.tokens_per_s;
                             }),
              out.end());
  }
  // Those that fit first, fastest first (per GPU: more ranks must earn their GPUs); then the rest by peak.
  auto per_gpu = [](const Plan& p) { return p.speed.tokens_per_s / double(p.spec.world); };
  std::stable_sort(out.begin(), out.end(), [&](const Candidate& a, const Candidate& b) {
    if (a.plan.fits != b.plan.fits) return a.plan.fits;
    if (a.plan.fits && a.plan.speed.known && b.plan.speed.known) return per_gpu(a.plan) > per_gpu(b.plan);
    return a.plan.memory.peak < b.plan.memory.peak;
  });
  return out;
}

}  // namespace hs::plan
