// train::Prefetcher (issue #12: the next micro-batch is collated on a background thread while the current one
// runs): loads come back in the order taken, each once, with their own data; a load's error is thrown by
// take() on the caller's thread (not by start()), with its message, where and hint; a started load that is
// not the one taken is dropped and the taken one loaded in the caller; no two loads ever run at once; wait()
// leaves no load running; background = false (HS_SYNC_INPUTS=1) loads everything in the caller; a failed,
// unclaimed load is dropped silently on destruction.
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <ATen/ATen.h>

#include "core/error.h"
#include "support/test_support.h"
#include "train/batches.h"

namespace {

using hs::train::Batch;
using hs::train::Prefetcher;

// Loads that record where they ran and whether two overlapped; each takes a few ms, like a shard read.
struct Loads {
  std::atomic<int> running{0}, most{0}, calls{0};
  std::thread::id caller = std::this_thread::get_id();
  std::atomic<int> on_caller{0};

  Prefetcher::Load make(int64_t value, bool fail = false) {
    return [this, value, fail] {
      const int now = ++running;
      int seen = most.load();
      while (now > seen && !most.compare_exchange_weak(seen, now)) {
      }
      ++calls;
      if (std::this_thread::get_id() == caller) ++on_caller;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      --running;
      if (fail)
        throw hs::Error(hs::str("cannot read sample ", value)).at("shard-000.h5").hint("re-run hsloth prep");
      Batch b;
      b.inputs.input_ids = at::full({1, 4}, value, at::kLong);
      b.mask = at::ones({1, 4}, at::kByte);
      return b;
    };
  }
};

int64_t value_of(const Batch& b) { return b.inputs.input_ids[0][0].item<int64_t>(); }

TEST(Prefetcher, BatchesComeInTakenOrderLoadedAheadOnOneWorker) {
  Loads loads;
  Prefetcher p(true);
  const int64_t steps = 4, per_step = 3;
  std::vector<int64_t> got;
  for (int64_t s = 0; s < steps; ++s)
    for (int64_t i = 0; i < per_step; ++i) {
      Batch b = p.take(s, i, loads.make(s * 10 + i));
      if (i + 1 < per_step)
        p.start(s, i + 1, loads.make(s * 10 + i + 1));
      else if (s + 1 < steps)
        p.start(s + 1, 0, loads.make((s + 1) * 10));
      got.push_back(value_of(b));
    }
  p.wait();
  std::vector<int64_t> want;
  for (int64_t s = 0; s < steps; ++s)
    for (int64_t i = 0; i < per_step; ++i) want.push_back(s * 10 + i);
  EXPECT_EQ(got, want);
  EXPECT_EQ(loads.calls.load(), steps * per_step) << "every batch loaded exactly once";
  EXPECT_EQ(loads.on_caller.load(), 1) << "only the very first batch is loaded in the caller";
  EXPECT_EQ(loads.most.load(), 1) << "two loads ran at once";
}

TEST(Prefetcher, ErrorOfABackgroundLoadIsThrownByTakeOnTheCaller) {
  Loads loads;
  Prefetcher p(true);
  EXPECT_NO_THROW(p.start(5, 0, loads.make(50, /*fail=*/true)));
  p.wait();  // the load has failed by now; nothing was thrown yet
  EXPECT_EQ(loads.calls.load(), 1);
  try {
    p.take(5, 0, loads.make(50));
    FAIL() << "take() did not rethrow the load's error";
  } catch (const hs::Error& e) {
    EXPECT_EQ(e.message(), "cannot read sample 50");
    EXPECT_EQ(e.where(), "shard-000.h5");
    EXPECT_EQ(e.hint_text(), "re-run hsloth prep");
  }
  EXPECT_EQ(loads.calls.load(), 1) << "the failed batch was loaded again instead of reporting its error";
  // The next batch is unaffected.
  EXPECT_EQ(value_of(p.take(5, 1, loads.make(51))), 51);
}

TEST(Prefetcher, AnotherKeyDropsTheStartedLoadAndLoadsInTheCaller) {
  Loads loads;
  Prefetcher p(true);
  p.start(1, 0, loads.make(10, /*fail=*/true));  // dropped: its error must not surface
  EXPECT_EQ(value_of(p.take(2, 0, loads.make(20))), 20);
  EXPECT_EQ(loads.calls.load(), 2);
  EXPECT_EQ(loads.on_caller.load(), 1);
  EXPECT_EQ(loads.most.load(), 1) << "the dropped load overlapped the caller's";
  // start() while a load runs waits for it first: still one at a time.
  p.start(3, 0, loads.make(30));
  p.start(3, 1, loads.make(31));
  EXPECT_EQ(value_of(p.take(3, 1, loads.make(31))), 31);
  EXPECT_EQ(loads.most.load(), 1);
}

TEST(Prefetcher, WithoutBackgroundEverythingLoadsInTheCallerWhenTaken) {
  Loads loads;
  Prefetcher p(false);
  p.start(0, 1, loads.make(1, /*fail=*/true));
  EXPECT_EQ(loads.calls.load(), 0) << "start() loaded without background";
  EXPECT_EQ(value_of(p.take(0, 1, loads.make(1))), 1);
  EXPECT_EQ(loads.on_caller.load(), 1);
  EXPECT_THROW(p.take(0, 2, loads.make(2, /*fail=*/true)), hs::Error);
}

TEST(Prefetcher, DestructionWaitsForAndDropsAFailedLoad) {
  Loads loads;
  {
    Prefetcher p(true);
    p.start(9, 0, loads.make(90, /*fail=*/true));
  }  // must neither throw nor leave the load running
  EXPECT_EQ(loads.calls.load(), 1);
  EXPECT_EQ(loads.running.load(), 0);
}

}  // namespace
