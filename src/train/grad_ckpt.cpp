// Per-layer gradient checkpointing (see grad_ckpt.h): a custom autograd function keeps only the layer's
// input (on the host with offload) and RNG states, and re-runs the layer under autograd in the backward.
//
// Offload on a GPU is asynchronous and double-buffered. Forward: the input goes device -> pinned host on a
// side stream (after an event on the compute stream that produced it), and the device block is marked as
// used by the side stream (recordDataPtrOnStream), so the caching allocator does not hand it out again
// before the copy has read it; no host wait. The pinned buffers come from a pool kept for the process
// (acquired per layer, given back after the layer's backward), so steady-state steps allocate no pinned
// memory. Backward of layer call c: its input comes back host -> device on the side stream (or was already
// prefetched), the compute stream waits on that copy's event, and layer c-1's input is prefetched on the side
// stream while layer c recomputes and back-propagates; so at most two layer inputs are on the device beyond
// what the layer in flight uses. Every copy of a pinned buffer goes through the one side stream per device,
// so a buffer given back to the pool is rewritten only after its previous copy. On the CPU (and without
// offload) the input is kept as it is, as before.
#include "train/grad_ckpt.h"

#include <c10/core/Event.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "core/error.h"

namespace hs::train {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

const c10::impl::DeviceGuardImplInterface* cuda_impl() {
  return c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA);
}

// Pinned host buffers (flat bytes), reused across layers and steps: acquire() hands out the smallest free
// buffer that is large enough, allocating only when none is (free buffers too small for that size are then
// dropped, so a growing batch shape does not pile up buffers).
class PinnedPool {
 public:
  at::Tensor acquire(int64_t nbytes) {
    std::lock_guard<std::mutex> lock(mu_);
    Buf* best = nullptr;
    for (Buf& b : bufs_)
      if (!b.busy && b.bytes.numel() >= nbytes && (!best || b.bytes.numel() < best->bytes.numel())) best = &b;
    if (!best) {
      std::erase_if(bufs_, [&](const Buf& b) { return !b.busy && b.bytes.numel() < nbytes; });
      bufs_.push_back({at::empty({nbytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(true)), false});
      best = &bufs_.back();
    }
    best->busy = true;
    return best->bytes;
  }
  int64_t total_bytes() {
    std::lock_guard<std::mutex> lock(mu_);
    int64_t n = 0;
    for (const Buf& b : bufs_) n += b.bytes.numel();
    return n;
  }
  void release(const at::Tensor& bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    for (Buf& b : bufs_)
      if (b.bytes.is_same(bytes)) b.busy = false;
  }

 private:
  struct Buf {
    at::Tensor bytes;
    bool busy = false;
  };
  std::mutex mu_;
  std::vector<Buf> bufs_;
};

PinnedPool& pinned_pool() {
  static PinnedPool* pool = new PinnedPool();  // never destroyed: pinned memory outlives static teardown
  return *pool;
}

// The side stream of a device that carries every offload copy.
c10::Stream side_stream(const at::Device& device) {
  static std::mutex mu;
  static std::map<int, c10::Stream> streams;
  std::lock_guard<std::mutex> lock(mu);
  auto it = streams.find(device.index());
  if (it == streams.end())
    it = streams.emplace(device.index(), cuda_impl()->getStreamFromGlobalPool(device, false)).first;
  return it->second;
}

// An event recorded on `stream` now.
std::unique_ptr<c10::Event> record_on(const c10::Stream& stream) {
  auto ev = std::make_unique<c10::Event>(c10::DeviceType::CUDA);
  ev->record(stream);
  return ev;
}

// One checkpointed layer call of the current micro-batch: the call, and for a GPU offload its input's host
// copy and (once fetched) its device copy.
struct Slot {
  std::shared_ptr<model::Model::LayerCall> call;
  at::Tensor host;  // pinned pool buffer (bytes) holding the input; undefined unless offloaded on a GPU
  std::vector<int64_t> sizes;
  int64_t nbytes = 0;
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
  at::Tensor fetched;                    // the input back on the device (being) copied on the side stream
  std::unique_ptr<c10::Event> fetch_ev;  // that copy done

  at::Tensor host_view() const { return host.narrow(0, 0, nbytes).view(dtype).view(sizes); }
};

// The slots of the current micro-batch, referenced by index from the autograd contexts (saved_data holds
// IValues only). The trainer clears them after each backward.
std::vector<std::shared_ptr<Slot>> g_slots;
std::mutex g_slots_mutex;

std::shared_ptr<Slot> slot_at(int64_t i) {
  std::lock_guard<std::mutex> lock(g_slots_mutex);
  if (i < 0 || size_t(i) >= g_slots.size()) return nullptr;
  return g_slots[size_t(i)];
}

// Device -> pinned host on the side stream, after what the compute stream has queued so far (which produced
// x). The device block stays reserved for the side stream until the copy has read it.
void offload(Slot& s, const at::Tensor& x) {
  const at::Tensor src = x.detach().contiguous();
  s.sizes = src.sizes().vec();
  s.dtype = src.scalar_type();
  s.device = src.device();
  s.nbytes = int64_t(src.nbytes());
  s.host = pinned_pool().acquire(s.nbytes);
  const c10::Stream compute = cuda_impl()->getStream(s.device), side = side_stream(s.device);
  side.wait(*record_on(compute));
  {
    c10::StreamGuard guard(side);
    s.host_view().copy_(src, /*non_blocking=*/true);
  }
  cuda_impl()->recordDataPtrOnStream(src.storage().data_ptr(), side);
}

// Starts the host -> device copy of an offloaded input on the side stream (no-op when started already). The
// device tensor is allocated on the compute stream; the side stream first waits for the compute stream's
// queued work, which may still use that memory's previous owner.
void fetch(Slot& s) {
  if (!s.host.defined() || s.fetched.defined()) return;
  s.fetched = at::empty(s.sizes, at::TensorOptions().dtype(s.dtype).device(s.device));
  const c10::Stream side = side_stream(s.device);
  side.wait(*record_on(cuda_impl()->getStream(s.device)));
  {
    c10::StreamGuard guard(side);
    s.fetched.copy_(s.host_view(), /*non_blocking=*/true);
  }
  s.fetch_ev = record_on(side);
}

// The offloaded input of slot `i` on the device, ready for the compute stream; prefetches slot i-1's.
at::Tensor take_offloaded(int64_t i) {
  std::shared_ptr<Slot> s = slot_at(i);
  fetch(*s);
  if (std::shared_ptr<Slot> prev = slot_at(i - 1)) fetch(*prev);
  s->fetch_ev->block(cuda_impl()->getStream(s->device));
  at::Tensor x = s->fetched;
  // The copies of this buffer are all queued on the side stream: the pool's next user of it (a later
  // offload) is queued after them.
  pinned_pool().release(s->host);
  s->host = at::Tensor();
  s->fetched = at::Tensor();
  s->fetch_ev.reset();
  return x;
}

struct LayerCheckpoint : public torch::autograd::Function<LayerCheckpoint> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t call, bool offload_input) {
    ctx->saved_data["rng"] = at::detail::getDefaultCPUGenerator().get_state();
    if (x.is_cuda())
      ctx->saved_data["rng_dev"] = at::globalContext().defaultGenerator(x.device()).get_state();
    ctx->saved_data["device"] = static_cast<int64_t>(x.device().is_cuda() ? x.device().index() : -1);
    ctx->saved_data["call"] = call;
    std::shared_ptr<Slot> slot = slot_at(call);
    if (offload_input && x.is_cuda())
      offload(*slot, x);
    else  // on the CPU, offload keeps the input where it is
      ctx->saved_data["input"] = offload_input ? x.detach().to(at::kCPU) : x.detach();
    at::NoGradGuard no_grad;
    return (*slot->call)(x);
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const int64_t dev = ctx->saved_data["device"].toInt();
    const int64_t call = ctx->saved_data["call"].toInt();
    std::shared_ptr<Slot> slot = slot_at(call);
    HS_CHECK(slot, "gradient checkpointing: the layer call was cleared before its backward");
    at::Tensor x;
    if (ctx->saved_data.count("input")) {
      at::Tensor saved = ctx->saved_data["input"].toTensor();
      x = (dev >= 0 ? saved.to(at::Device(at::kCUDA, at::DeviceIndex(dev))) : saved).detach();
    } else {
      x = take_offloaded(call);
    }
    x.requires_grad_(true);
    // Replay the forward's random streams (dropout), then put the current ones back.
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    at::Tensor now = gen.get_state();
    gen.set_state(ctx->saved_data["rng"].toTensor());
    std::optional<at::Generator> dev_gen;
    at::Tensor dev_now;
    if (dev >= 0) {
      dev_gen = at::globalContext().defaultGenerator(at::Device(at::kCUDA, at::DeviceIndex(dev)));
      dev_now = dev_gen->get_state();
      dev_gen->set_state(ctx->saved_data["rng_dev"].toTensor());
    }
    at::Tensor out;
    {
      at::AutoGradMode enable(true);
      out = (*slot->call)(x);
    }
    gen.set_state(now);
    if (dev_gen) dev_gen->set_state(dev_now);
    torch::autograd::backward({out}, {grads[0]});
    return {x.grad(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

GradCkpt parse_grad_ckpt(const std::string& name) {
  if (name == "off") return GradCkpt::off;
  if (name == "on") return GradCkpt::on;
  if (name == "offload") return GradCkpt::offload;
  throw Error("unknown train.grad_ckpt '" + name + "'").hint("use off, on or offload");
}

model::Model::LayerRunner checkpoint_runner(GradCkpt mode) {
  const bool offload_input = mode == GradCkpt::offload;
  return [offload_input](int, const at::Tensor& h, const model::Model::LayerCall& call) -> at::Tensor {
    if (!at::GradMode::is_enabled()) return call(h);
    // The first layer's input (frozen embeddings) does not require grad; without it autograd would never
    // call the backward that recomputes the layer (as HF's enable_input_require_grads works around).
    at::Tensor x = h.requires_grad() ? h : h.detach().requires_grad_(true);
    int64_t index;
    {
      auto slot = std::make_shared<Slot>();
      slot->call = std::make_shared<model::Model::LayerCall>(call);
      std::lock_guard<std::mutex> lock(g_slots_mutex);
      index = int64_t(g_slots.size());
      g_slots.push_back(std::move(slot));
    }
    return LayerCheckpoint::apply(x, index, offload_input);
  };
}

void clear_checkpoint_calls() {
  std::vector<std::shared_ptr<Slot>> slots;
  {
    std::lock_guard<std::mutex> lock(g_slots_mutex);
    slots.swap(g_slots);
  }
  // Inputs whose backward never ran (an error in between): their buffers go back to the pool (their copies
  // are queued on the side stream, before any later use of the buffer).
  for (auto& s : slots)
    if (s->host.defined()) pinned_pool().release(s->host);
}

int64_t offload_pinned_bytes() { return pinned_pool().total_bytes(); }

}  // namespace hs::train
