// Steady-clock timers and the formatting of durations, counts and rates; Progress prints a line with rate
// and ETA at most once per interval (and once at the end); see timer.h.
#include "core/timer.h"

#include <cmath>
#include <cstdio>

#include "core/log.h"

namespace hs {

std::string format_duration(double s) {
  char buf[64];
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, (int(s) % 3600) / 60);
  }
  return buf;
}

std::string format_count(double v) {
  char buf[64];
  const char* suffix[] = {"", "k", "M", "G", "T"};
  int i = 0;
  while (std::fabs(v) >= 1000 && i < 4) {
    v /= 1000;
    ++i;
  }
  if (i == 0)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%.*f%s", std::fabs(v) < 10 ? 2 : (std::fabs(v) < 100 ? 1 : 0), v,
                  suffix[i]);
  return buf;
}

std::string format_bytes(double b) {
  char buf[64];
  const char* suffix[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (b >= 1024 && i < 4) {
    b /= 1024;
    ++i;
  }
  std::snprintf(buf, sizeof buf, i == 0 ? "%.0f %s" : "%.2f %s", b, suffix[i]);
  return buf;
}

Progress::Progress(std::string label, int64_t total, std::string unit, double interval_s)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), interval_(interval_s) {}

void Progress::update(int64_t done) {
  double t = timer_.seconds();
  if (t - last_ < interval_) return;
  last_ = t;
  print(done, false);
}

void Progress::finish() { print(total_, true); }

void Progress::print(int64_t done, bool final) {
  double t = timer_.seconds();
  double rate = t > 0 ? done / t : 0;
  std::string line = label_ + " " + format_count(double(done));
  if (total_ > 0) {
    char pct[32];
    std::snprintf(pct, sizeof pct, " (%.1f%%)", 100.0 * double(done) / double(total_));
    line += "/" + format_count(double(total_)) + pct;
  }
  line += " " + format_count(rate) + " " + unit_ + "/s";
  if (final)
    line += " in " + format_duration(t);
  else if (total_ > 0 && rate > 0)
    line += " ETA " + format_duration(double(total_ - done) / rate);
  log::info(line);
}

}  // namespace hs
