// model_probe: runs our decoder on a batch and writes what the Python parity scripts compare against
// transformers/PEFT: logits, the masked cross-entropy (sum and count) and gradients (LoRA tensors under
// their PEFT names, or every base tensor in full fine-tuning). It can also create a LoRA with our seeded
// PEFT-style init, load a PEFT adapter, re-save it, and merge it in memory.
//
//   model_probe --model DIR [--adapter DIR | --lora-r R --lora-alpha A --lora-targets q_proj,v_proj
//               --lora-seed S [--lora-rslora]] [--save-adapter DIR] [--merge] [--full]
//               [--batch FILE --out FILE [--grad]] [--dtype float32|bfloat16] [--device cpu|cuda]
//
// The batch file (safetensors) holds input_ids [B, T] (int), optional loss_mask [B, T], position_ids
// [B, T] and cu_seqlens [n+1]. The output holds logits [B, T, V] (float32), loss_sum and loss_count
// (float64 scalars) and grad.<name> for each trainable tensor with --grad.
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <ATen/core/grad_mode.h>

#include "core/error.h"
#include "io/safetensors.h"
#include "lora/lora.h"
#include "model/model.h"
#include "model/tensor_io.h"

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

int run(int argc, char** argv) {
  std::map<std::string, std::string> opt;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.substr(0, 2) != "--") throw hs::Error(hs::str("unexpected argument '", arg, "'"));
    std::string a(arg.substr(2));
    if (a == "grad" || a == "merge" || a == "full" || a == "lora-rslora") {
      opt.insert_or_assign(a, std::string(1, '1'));
    } else {
      if (i + 1 >= argc) throw hs::Error(hs::str("--", a, " needs a value"));
      opt[a] = argv[++i];
    }
  }
  auto has = [&](const char* k) { return opt.count(k) != 0; };
  if (!has("model")) throw hs::Error("--model is required");
  hs::model::LoadOptions lo;
  lo.dtype = hs::model::parse_scalar_type(has("dtype") ? opt["dtype"] : "float32");
  lo.device = at::Device(has("device") ? opt["device"] : "cpu");
  hs::model::Model model = hs::model::Model::load(opt["model"], lo);
  if (has("full")) model.set_full_finetune(true);

  std::optional<hs::lora::Adapter> adapter;
  // Adapters in float32, as PEFT keeps them on a bf16/fp32 base; float64 when the model is (model.double()).
  const at::ScalarType adapter_dtype = lo.dtype == at::kDouble ? at::kDouble : at::kFloat;
  if (has("adapter")) {
    adapter.emplace(hs::lora::Adapter::load(model, opt["adapter"], adapter_dtype));
  } else if (has("lora-r")) {
    hs::lora::LoraConfig c;
    c.r = std::stoll(opt["lora-r"]);
    c.alpha = has("lora-alpha") ? std::stod(opt["lora-alpha"]) : 2.0 * double(c.r);
    c.use_rslora = has("lora-rslora");
    if (has("lora-targets")) c.targets = hs::lora::parse_targets(split(opt["lora-targets"], ','));
    adapter.emplace(hs::lora::Adapter::create(model, c, has("lora-seed") ? std::stoull(opt["lora-seed"]) : 0,
                                              adapter_dtype));
  }
  if (adapter && has("save-adapter")) adapter->save(opt["save-adapter"]);
  if (adapter && has("merge")) adapter->merge_into_model();

  if (!has("batch")) return 0;
  if (!has("out")) throw hs::Error("--out is required with --batch");
  hs::io::Checkpoint batch = hs::io::Checkpoint::open(opt["batch"]);
  auto tensor = [&](const char* name) {
    const hs::io::TensorInfo* t = batch.find(name);
    return t ? hs::model::load_tensor(*t, at::ScalarType::Undefined, at::kCPU) : at::Tensor();
  };
  hs::model::Inputs in;
  in.input_ids = tensor("input_ids");
  in.position_ids = tensor("position_ids");
  in.cu_seqlens = tensor("cu_seqlens");
  at::Tensor mask = tensor("loss_mask");
  if (!mask.defined()) mask = at::ones_like(in.input_ids, at::kByte);

  std::vector<hs::model::HostTensor> out;
  const bool grad = has("grad");
  if (grad) model.set_training(false);  // dropout off: gradients are compared deterministically
  {
    std::optional<at::NoGradGuard> no_grad;
    if (!grad) no_grad.emplace();
    at::Tensor logits = model.forward(in);
    out.push_back(hs::model::to_host("logits", logits, at::kFloat));
    hs::model::ops::LossSum loss = model.loss(in, mask);
    at::Tensor sum = loss.sum.detach().to(at::kDouble).reshape({});
    out.push_back(hs::model::to_host("loss_sum", sum));
    out.push_back(hs::model::to_host("loss_count", at::full({}, double(loss.count), at::kDouble)));
    if (grad) {
      at::Tensor mean = loss.sum / double(std::max<int64_t>(loss.count, 1));
      mean.backward();
      std::vector<hs::model::NamedTensor> params =
          adapter ? adapter->trainable()
                  : (has("full") ? model.named_parameters() : std::vector<hs::model::NamedTensor>{});
      for (const auto& p : params) {
        at::Tensor g = p.tensor.grad();
        if (!g.defined()) g = at::zeros_like(p.tensor);
        out.push_back(hs::model::to_host("grad." + p.name, g, at::kFloat));
      }
      // The frozen base must not have received gradients.
      if (adapter)
        for (const auto& p : model.named_parameters())
          if (p.tensor.grad().defined() || p.tensor.requires_grad())
            throw hs::Error("base tensor " + p.name + " is trainable or got a gradient");
    }
  }
  std::vector<hs::io::TensorRef> refs;
  for (const auto& h : out) refs.push_back(h.ref());
  hs::io::write_safetensors(opt["out"], refs);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "model_probe: error: %s\n", e.what());
    return 1;
  }
}
