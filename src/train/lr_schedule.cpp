// Warmup + constant/linear/cosine factors (see lr_schedule.h), the formulas of HF transformers'
// get_*_schedule_with_warmup, step index 0-based.
#include "train/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace hs::train {

Schedule parse_schedule(const std::string& name) {
  if (name == "constant") return Schedule::constant;
  if (name == "linear") return Schedule::linear;
  if (name == "cosine") return Schedule::cosine;
  throw Error("unknown learning-rate schedule '" + name + "'").hint("use constant, linear or cosine");
}

double LrSchedule::factor(int64_t step) const {
  if (step < warmup_steps) return double(step) / double(std::max<int64_t>(1, warmup_steps));
  switch (kind) {
    case Schedule::constant:
      return 1.0;
    case Schedule::linear:
      return std::max(0.0,
                      double(total_steps - step) / double(std::max<int64_t>(1, total_steps - warmup_steps)));
    case Schedule::cosine: {
      double progress =
          double(step - warmup_steps) / double(std::max<int64_t>(1, total_steps - warmup_steps));
      return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * 0.5 * 2.0 * progress)));
    }
  }
  return 1.0;
}

}  // namespace hs::train
