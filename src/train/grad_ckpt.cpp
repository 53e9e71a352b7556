// Per-layer gradient checkpointing (see grad_ckpt.h): a custom autograd function keeps only the layer's
// input (on the host with offload) and RNG states, and re-runs the layer under autograd in the backward.
#include "train/grad_ckpt.h"

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <mutex>
#include <optional>
#include <vector>

#include "core/error.h"

namespace hs::train {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// The layer calls of the current step, referenced by index from the autograd contexts (saved_data holds
// IValues only). The trainer clears them after each backward.
std::vector<std::shared_ptr<model::Model::LayerCall>> g_calls;
std::mutex g_calls_mutex;

const model::Model::LayerCall& call_at(int64_t i) {
  std::lock_guard<std::mutex> lock(g_calls_mutex);
  return *g_calls.at(size_t(i));
}

struct LayerCheckpoint : public torch::autograd::Function<LayerCheckpoint> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t call, bool offload) {
    ctx->saved_data["rng"] = at::detail::getDefaultCPUGenerator().get_state();
    if (x.is_cuda())
      ctx->saved_data["rng_dev"] = at::globalContext().defaultGenerator(x.device()).get_state();
    ctx->saved_data["device"] = static_cast<int64_t>(x.device().is_cuda() ? x.device().index() : -1);
    ctx->saved_data["call"] = call;
    ctx->saved_data["input"] = offload ? x.detach().to(at::kCPU) : x.detach();
    at::NoGradGuard no_grad;
    return call_at(call)(x);
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    at::Tensor saved = ctx->saved_data["input"].toTensor();
    const int64_t dev = ctx->saved_data["device"].toInt();
    at::Tensor x = (dev >= 0 ? saved.to(at::Device(at::kCUDA, at::DeviceIndex(dev))) : saved).detach();
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
      out = call_at(ctx->saved_data["call"].toInt())(x);
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
  const bool offload = mode == GradCkpt::offload;
  return [offload](int, const at::Tensor& h, const model::Model::LayerCall& call) -> at::Tensor {
    if (!at::GradMode::is_enabled()) return call(h);
    // The first layer's input (frozen embeddings) does not require grad; without it autograd would never
    // call the backward that recomputes the layer (as HF's enable_input_require_grads works around).
    at::Tensor x = h.requires_grad() ? h : h.detach().requires_grad_(true);
    int64_t index;
    {
      std::lock_guard<std::mutex> lock(g_calls_mutex);
      index = int64_t(g_calls.size());
      g_calls.push_back(std::make_shared<model::Model::LayerCall>(call));
    }
    return LayerCheckpoint::apply(x, index, offload);
  };
}

void clear_checkpoint_calls() {
  std::lock_guard<std::mutex> lock(g_calls_mutex);
  g_calls.clear();
}

}  // namespace hs::train
