// Wall-clock timing and human-readable durations/rates for progress lines.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace hs {

class Timer {
 public:
  Timer() : start_(std::chrono::steady_clock::now()) {}
  void reset() { start_ = std::chrono::steady_clock::now(); }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

// "1h02m", "3m05s", "12.3s"
std::string format_duration(double seconds);
// "12.3k", "4.56M": compact counts and rates.
std::string format_count(double value);
// "1.50 GiB"
std::string format_bytes(double bytes);

// Prints "<label> done/total (pct) rate/s ETA" at most every `interval` seconds, on rank 0.
class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit, double interval_s = 2.0);
  void update(int64_t done);
  void finish();

 private:
  void print(int64_t done, bool final);
  std::string label_, unit_;
  int64_t total_;
  double interval_, last_ = -1;
  Timer timer_;
};

}  // namespace hs
