// GradBuckets in one process, against a recording communicator (world 2, no MPI): with an overlapping
// communicator every bucket is started from inside the backward, in bucket order (the end of the flat order
// first), and only once all its gradients are accumulated (the values it was handed are the final
// gradient's); with a blocking one nothing starts before finish(); earlier micro-batches start nothing; the
// fp64 sum is what is reduced when there is one; a gradient arriving after its bucket was complete is an error.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "dist/communicator.h"
#include "support/test_support.h"
#include "train/flat_params.h"
#include "train/grad_buckets.h"

namespace {
using hs::train::FlatParams;
using hs::train::GradBuckets;

struct RecordingComm final : hs::dist::Communicator {
  explicit RecordingComm(bool overlap) : overlap(overlap) {}
  struct Call {
    const void* ptr;
    at::Tensor values;  // what was handed over, copied at once
    bool during_backward;
  };
  int rank() const override { return 0; }
  int world() const override { return 2; }
  std::string name() const override { return "recording"; }
  void all_reduce_sum(at::Tensor& t) override { calls.push_back({t.data_ptr(), t.clone(), in_backward}); }
  void all_reduce_sum_async(at::Tensor& t) override { all_reduce_sum(t); }
  void wait_pending() override { ++waits; }
  bool overlaps() const override { return overlap; }
  void broadcast(at::Tensor&, int) override {}
  void barrier() override {}
  void reduce_scatter_sum(const at::Tensor&, at::Tensor&) override {}
  void all_gather(const at::Tensor&, at::Tensor&) override {}
  bool overlap;
  bool in_backward = false;
  int waits = 0;
  std::vector<Call> calls;
};

struct Chain {
  std::vector<at::Tensor> w;
  std::unique_ptr<FlatParams> flat;
  Chain() {
    at::manual_seed(0);
    std::vector<at::Tensor*> slots;
    std::vector<std::string> names;
    for (int k = 0; k < 4; ++k) w.push_back(at::randn({6, 6}, at::kFloat));
    for (int k = 0; k < 4; ++k) {
      slots.push_back(&w[size_t(k)]);
      names.push_back("w" + std::to_string(k));
    }
    flat = std::make_unique<FlatParams>(slots, names, at::Device(at::kCPU));
  }
  at::Tensor loss(double scale) const {
    at::Tensor h = at::ones({3, 6}) * scale;
    for (const auto& t : w) h = at::tanh(h.mm(t));
    return h.sum();
  }
};

void backward(RecordingComm& comm, const at::Tensor& loss) {
  comm.in_backward = true;
  loss.backward();
  comm.in_backward = false;
}

TEST(GradBuckets, OverlappingStartsEachCompleteBucketInsideBackwardInOrder) {
  Chain c;
  RecordingComm comm(/*overlap=*/true);
  GradBuckets buckets(*c.flat, at::Tensor(), /*bucket_mb=*/1e-6, comm);
  ASSERT_EQ(buckets.size(), 4u);  // one per tensor
  c.flat->zero_grad();
  backward(comm, c.loss(0.5));  // an earlier micro-batch: accumulates, starts nothing
  EXPECT_TRUE(comm.calls.empty());
  buckets.arm();
  backward(comm, c.loss(-0.3));
  buckets.flush();
  ASSERT_EQ(comm.calls.size(), 4u);
  const at::Tensor& g = c.flat->grad();
  for (size_t b = 0; b < 4; ++b) {
    const int64_t k = 3 - int64_t(b);  // the last tensor's bucket first
    EXPECT_TRUE(comm.calls[b].during_backward) << "bucket " << b;
    EXPECT_EQ(comm.calls[b].ptr, g.narrow(0, k * 36, 36).data_ptr()) << "bucket " << b;
    EXPECT_TRUE(at::equal(comm.calls[b].values, g.narrow(0, k * 36, 36))) << "bucket " << b << " incomplete";
  }
  buckets.finish();
  EXPECT_EQ(comm.calls.size(), 4u);
  EXPECT_EQ(comm.waits, 1);
}

TEST(GradBuckets, BucketsOfTwoTensorsStartOnlyWhenBothAreThere) {
  Chain c;
  RecordingComm comm(/*overlap=*/true);
  GradBuckets buckets(*c.flat, at::Tensor(), /*bucket_mb=*/200.0 / (1024 * 1024), comm);  // 144 B per tensor
  ASSERT_EQ(buckets.size(), 2u);
  c.flat->zero_grad();
  buckets.arm();
  backward(comm, c.loss(0.9));
  buckets.flush();
  ASSERT_EQ(comm.calls.size(), 2u);
  for (size_t b = 0; b < 2; ++b) {
    const at::Tensor want = c.flat->grad().narrow(0, (1 - int64_t(b)) * 72, 72);
    EXPECT_TRUE(comm.calls[b].during_backward);
    EXPECT_EQ(comm.calls[b].ptr, want.data_ptr());
    EXPECT_TRUE(at::equal(comm.calls[b].values, want)) << "bucket " << b << " started incomplete";
  }
  buckets.finish();
}

TEST(GradBuckets, BlockingCommunicatorReducesInFinishInTheSameOrder) {
  Chain c;
  RecordingComm comm(/*overlap=*/false);
  GradBuckets buckets(*c.flat, at::Tensor(), /*bucket_mb=*/1e-6, comm);
  c.flat->zero_grad();
  buckets.arm();
  backward(comm, c.loss(0.7));
  buckets.flush();
  EXPECT_TRUE(comm.calls.empty());
  buckets.finish();
  ASSERT_EQ(comm.calls.size(), 4u);
  for (size_t b = 0; b < 4; ++b)
    EXPECT_EQ(comm.calls[b].ptr, c.flat->grad().narrow(0, (3 - int64_t(b)) * 36, 36).data_ptr());
}

TEST(GradBuckets, Fp64SumIsWhatIsReduced) {
  Chain c;
  RecordingComm comm(/*overlap=*/true);
  at::Tensor sum = at::zeros({c.flat->numel()}, at::kDouble);
  GradBuckets buckets(*c.flat, sum, /*bucket_mb=*/1e-6, comm);
  c.flat->zero_grad();
  backward(comm, c.loss(0.5));  // the trainer's earlier micro-batch: into the sum, then zeroed
  c.flat->gather_grads();
  sum.add_(c.flat->grad());
  const at::Tensor first = sum.clone();
  c.flat->zero_grad();
  buckets.arm();
  backward(comm, c.loss(-0.3));
  buckets.flush();
  ASSERT_EQ(comm.calls.size(), 4u);
  EXPECT_TRUE(at::equal(sum, first + c.flat->grad().to(at::kDouble)));
  for (size_t b = 0; b < 4; ++b) {
    EXPECT_EQ(comm.calls[b].values.scalar_type(), at::kDouble);
    EXPECT_EQ(comm.calls[b].ptr, sum.narrow(0, (3 - int64_t(b)) * 36, 36).data_ptr());
  }
}

TEST(GradBuckets, GradientAfterItsBucketCompletedIsAnError) {
  Chain c;
  RecordingComm comm(/*overlap=*/false);
  GradBuckets buckets(*c.flat, at::Tensor(), /*bucket_mb=*/1e-6, comm);
  c.flat->zero_grad();
  buckets.arm();
  backward(comm, c.loss(0.5));
  backward(comm, (c.w[3] * 2).sum());  // w3 again, in a second backward of the same micro-batch
  try {
    buckets.flush();
    FAIL() << "no error";
  } catch (const hs::Error& e) {
    EXPECT_NE(std::string(e.what()).find("w3"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("dist.bucket_mb = 0"), std::string::npos) << e.what();
  }
}

}  // namespace
