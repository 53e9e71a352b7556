// The shared model-loading flags of eval and generate; see model_flags.h.
#include "cli/model_flags.h"

#include "io/hf_config.h"
#include "model/runtime.h"
#include "quant/nf4_linear.h"

namespace hs::cli {

void add_model_flags(config::Schema& s) {
  s.str("device", "auto", model::kDeviceHelp);
  s.str("dtype", "auto", model::kDtypeHelp);
  s.choice("quant", "none", {"none", "nf4"},
           "nf4: quantize the projections to 4-bit NF4 at load (QLoRA's base; a pre-quantized bnb-4bit folder "
           "is NF4 anyway)");
}

ModelFlags read_model_flags(const config::Config& cfg) {
  ModelFlags f;
  f.device = cfg.get("device");
  f.dtype = cfg.get("dtype");
  f.nf4 = cfg.get("quant") == "nf4";
  return f;
}

model::LoadOptions load_options(const ModelFlags& flags, const std::string& model_dir, int local_rank) {
  const at::Device device = model::resolve_device(flags.device, local_rank);
  return quant::nf4_load_options({model::resolve_dtype(flags.dtype, device), device}, io::load_hf_config(model_dir),
                                 flags.nf4);
}

}  // namespace hs::cli
