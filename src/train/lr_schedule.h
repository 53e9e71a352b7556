// Learning-rate schedules with linear warmup, the same functions as HF transformers'
// get_{constant,linear,cosine}_schedule_with_warmup: the optimizer step with index k (0-based) uses
// lr * factor(k), so the first step of a warmup runs at lr 0, exactly as an HF Trainer run does.
#pragma once

#include <cstdint>
#include <string>

namespace hs::train {

enum class Schedule { constant, linear, cosine };

Schedule parse_schedule(const std::string& name);  // throws hs::Error naming the valid ones

struct LrSchedule {
  Schedule kind = Schedule::cosine;
  double peak_lr = 2e-4;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  // factor(k) in [0, 1]; lr(k) = peak_lr * factor(k).
  double factor(int64_t step) const;
  double lr(int64_t step) const { return peak_lr * factor(step); }
};

}  // namespace hs::train
