// `hsloth merge --model M --adapter A --out D`: folds a PEFT LoRA adapter into its base model and writes
// a complete Hugging Face folder (sharded safetensors + index, config.json, generation and tokenizer
// files copied) that transformers loads directly. Works tensor by tensor on the mapped checkpoint: untouched
// tensors are copied byte for byte, targeted weights become W + scaling * B A (computed in float32,
// rounded once to the output dtype); at most one shard is held in memory. The folder is written by
// model::write_hf_folder, as the trainer's full fine-tuning final/ is. An NF4 base (a pre-quantized bnb-4bit
// folder, or --quant nf4 for an adapter trained with finetune = qlora on a bf16 folder) is dequantized
// first, projection by projection, and the folder written dense (no quantization_config).
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "cli/command.h"
#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "io/file.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "lora/lora.h"
#include "model/hf_export.h"
#include "model/registry.h"
#include "model/runtime.h"
#include "model/tensor_io.h"
#include "quant/nf4.h"

namespace {
namespace fs = std::filesystem;

hs::config::Schema schema() {
  hs::config::Schema s("merge", "--model DIR --adapter DIR --out DIR [--dtype auto] [--max-shard-size 5GB]",
                       "Merge a LoRA adapter (PEFT format) into its base model and write a Hugging Face\n"
                       "folder (safetensors shards + index, config and tokenizer files) that transformers,\n"
                       "vLLM and `hsloth generate` load without PEFT.");
  s.input_path("model", "", "base model folder (config.json + safetensors)", true);
  s.input_path("adapter", "", "adapter folder (adapter_config.json + adapter_model.safetensors)", true);
  s.path("out", "", "output folder (created; must be empty unless --overwrite)", true);
  s.choice("dtype", "auto", {"auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16"},
           "dtype of the written weights (auto: as stored in the base model)");
  s.str("max-shard-size", "5GB", "largest shard file, e.g. 5GB, 500MB, 2GiB");
  s.flag("overwrite", "write into a non-empty output folder");
  s.choice(
      "quant", "none", {"none", "nf4"},
      "nf4: merge into the NF4-dequantized projections the adapter was trained on (finetune = qlora on a "
      "bf16 folder); a pre-quantized bnb-4bit base is always dequantized first");
  s.config_file(false);
  return s;
}

uint64_t parse_size(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  std::string unit = text.substr(i);
  for (char& c : unit) c = char(std::toupper(static_cast<unsigned char>(c)));
  double value = 0;
  try {
    value = std::stod(text.substr(0, i));
  } catch (const std::exception&) {
    value = -1;
  }
  const std::pair<const char*, double> units[] = {{"", 1},        {"B", 1},          {"KB", 1e3},
                                                  {"MB", 1e6},    {"GB", 1e9},       {"TB", 1e12},
                                                  {"KIB", 1024.}, {"MIB", 1048576.}, {"GIB", 1073741824.}};
  for (const auto& [name, mult] : units)
    if (unit == name && value > 0) return uint64_t(value * mult);
  throw hs::Error(hs::str("bad size '", text, "'")).at("--max-shard-size").hint("e.g. 5GB, 500MB or 2GiB");
}

// Natural order: embeddings, layers by index (tensors of a layer by name), then the rest by name.
std::vector<std::string> ordered_names(const hs::io::Checkpoint& ck) {
  struct Key {
    int group;
    long layer;
    std::string name;
  };
  auto key = [](const std::string& n) {
    if (hs::model::names::is_embedding(n)) return Key{0, 0, n};
    if (auto layer = hs::model::names::layer_of(n)) return Key{1, *layer, n};
    return Key{2, 0, n};
  };
  std::vector<std::string> names = ck.names();
  std::stable_sort(names.begin(), names.end(), [&](const std::string& a, const std::string& b) {
    Key ka = key(a), kb = key(b);
    if (ka.group != kb.group) return ka.group < kb.group;
    if (ka.layer != kb.layer) return ka.layer < kb.layer;
    return ka.name < kb.name;
  });
  return names;
}

// The options of a `hsloth merge` run, read from its config here and nowhere else.
struct Options {
  std::string model, adapter, out;
  std::string dtype = "auto";  // "auto": as stored; else a model::resolve_dtype word
  uint64_t max_shard = 0;
  bool overwrite = false;
  bool nf4 = false;  // --quant nf4
};

Options read_options(const hs::config::Config& cfg) {
  Options o;
  o.model = cfg.get("model");
  o.adapter = cfg.get("adapter");
  o.out = cfg.get("out");
  o.dtype = cfg.get("dtype");
  o.max_shard = parse_size(cfg.get("max-shard-size"));
  o.overwrite = cfg.get_bool("overwrite");
  o.nf4 = cfg.get("quant") == "nf4";
  return o;
}

int run(const hs::config::Config& cfg) {
  const Options o = read_options(cfg);
  const std::string &model_dir = o.model, &adapter_dir = o.adapter, &out_dir = o.out;
  hs::Timer timer;
  hs::io::HfConfig hf = hs::io::load_hf_config(model_dir);
  hs::lora::AdapterFile adapter = hs::lora::AdapterFile::open(adapter_dir, hf);
  hs::io::Checkpoint base = hs::io::Checkpoint::open(model_dir);
  const uint64_t max_shard = o.max_shard;

  std::error_code ec;
  if (fs::exists(out_dir, ec) && fs::equivalent(out_dir, model_dir, ec))
    throw hs::Error("the output folder is the base model's folder").at(out_dir).hint("choose a new folder");
  if (fs::exists(out_dir, ec) && !fs::is_empty(out_dir, ec) && !o.overwrite)
    throw hs::Error("output folder is not empty").at(out_dir).hint("choose a new folder or pass --overwrite");

  // The weights each targeted base tensor takes the LoRA from.
  struct Target {
    const hs::lora::AdapterFile::Pair* pair;
  };
  std::map<std::string, Target> targets;
  for (int i = 0; i < int(hf.num_hidden_layers); ++i)
    for (hs::model::Proj p : hs::model::kAllProjs)
      if (const auto* pair = adapter.find(i, p)) {
        const std::string w = hs::model::names::weight(i, p);
        if (!base.contains(w))
          throw hs::Error(hs::str("base model has no tensor '", w, "'")).at(base.source());
        targets[w] = {pair};
      }

  // An NF4 base: the projections' stored NF4 tensors (a pre-quantized folder) are dequantized, and with
  // --quant nf4 the dense ones go through quantize + dequantize, so the adapter lands on the weights it was
  // trained on; the other tensors of the NF4 layout are not written.
  const bool prequantized = hf.quantization.nf4;
  std::map<std::string, std::vector<int64_t>> nf4_weights;  // projection weight -> [out, in]
  std::set<std::string> nf4_parts;                          // the layout's other tensors (not written)
  if (prequantized || o.nf4) {
    for (int i = 0; i < int(hf.num_hidden_layers); ++i)
      for (hs::model::Proj p : hs::model::kAllProjs) {
        const std::string w = hs::model::names::weight(i, p);
        auto [out, in] = hs::model::proj_shape(hf, p);
        if (prequantized && !hs::quant::has_nf4(base, w))
          throw hs::Error(hs::str("the base is pre-quantized (config.json's quantization_config) but '", w,
                                  "' is not stored NF4"))
              .at(base.source())
              .hint("the folder is damaged or not a bitsandbytes 4-bit checkpoint");
        if (!prequantized) continue;
        nf4_weights[w] = {out, in};
        for (const std::string& n : base.names())
          if (n.size() > w.size() && n.compare(0, w.size() + 1, w + ".") == 0) nf4_parts.insert(n);
      }
    hs::log::info(prequantized ? "the base model is pre-quantized NF4 (bitsandbytes 4-bit): dequantizing its "
                                 "projections before merging"
                               : "--quant nf4: merging into the NF4-dequantized projections (quantize + "
                                 "dequantize of each base weight, as QLoRA trained on them)");
  }

  const std::string& dtype_word = o.dtype;
  // A pre-quantized base's dequantized weights are written in the dtype of its unquantized tensors.
  const at::ScalarType nf4_out =
      hs::model::to_scalar_type(base.get(hs::model::names::tensor(hs::model::Slot::embed)).dtype);
  const bool keep_dtype = dtype_word == "auto";
  const at::ScalarType out_type =
      keep_dtype ? at::ScalarType::Undefined : hs::model::resolve_dtype(dtype_word, at::kCPU);
  auto is_float = [](hs::io::DType d) {
    return d == hs::io::DType::F32 || d == hs::io::DType::BF16 || d == hs::io::DType::F16 ||
           d == hs::io::DType::F64;
  };

  std::vector<std::string> names;
  for (const std::string& n : ordered_names(base))
    if (!nf4_parts.count(n)) names.push_back(n);
  std::vector<hs::io::TensorSpec> specs;
  for (const std::string& n : names) {
    const hs::io::TensorInfo& t = base.get(n);
    auto q = nf4_weights.find(n);
    if (q != nf4_weights.end()) {
      specs.push_back({n, hs::model::to_io_dtype(keep_dtype ? nf4_out : out_type), q->second});
      continue;
    }
    hs::io::DType d = (!keep_dtype && is_float(t.dtype)) ? hs::model::to_io_dtype(out_type) : t.dtype;
    specs.push_back({n, d, t.shape});
  }
  std::set<std::string> requant;  // --quant nf4 on a dense base: the projection weights
  if (o.nf4 && !prequantized)
    for (int i = 0; i < int(hf.num_hidden_layers); ++i)
      for (hs::model::Proj p : hs::model::kAllProjs) requant.insert(hs::model::names::weight(i, p));
  const double scaling = adapter.config().scaling();
  hs::Progress progress("merge", int64_t(names.size()), "tensors");
  // config.json as given (its torch_dtype/dtype updated when the dtype changed); the rest copied.
  const hs::model::HfFolderWritten written = hs::model::write_hf_folder(
      out_dir, model_dir, specs,
      [&](size_t k, const hs::model::PutBytes& put) {
        const std::string& n = names[k];
        const hs::io::TensorInfo& t = base.get(n);
        auto it = targets.find(n);
        const bool dequant = nf4_weights.count(n) || requant.count(n);
        if (it == targets.end() && specs[k].dtype == t.dtype && !dequant) {
          put(t.data, t.nbytes);  // untouched: the mapped bytes as they are
        } else {
          at::Tensor w = hs::model::view_tensor(t);
          if (nf4_weights.count(n))
            w = hs::quant::dequantize_nf4(hs::quant::read_nf4(base, n, at::kCPU));
          else if (dequant)
            w = hs::quant::dequantize_nf4(hs::quant::quantize_nf4(w));
          if (it != targets.end()) {
            at::Tensor a = hs::model::view_tensor(*it->second.pair->a);
            at::Tensor b = hs::model::view_tensor(*it->second.pair->b);
            w = hs::lora::merge_weight(w, a, b, scaling);
          }
          hs::model::HostTensor h = hs::model::to_host(n, w, hs::model::to_scalar_type(specs[k].dtype));
          put(h.tensor.data_ptr(), h.spec.nbytes());
        }
        progress.update(int64_t(k + 1));
      },
      size_t(max_shard),
      !keep_dtype    ? hs::model::scalar_type_name(out_type)
      : prequantized ? hs::model::scalar_type_name(nf4_out)  // and quantization_config dropped
                     : "");
  progress.finish();
  if (!fs::exists(fs::path(model_dir) / "tokenizer.json", ec))
    hs::log::warn("the base model folder has no tokenizer.json; the merged folder has none either");
  hs::log::info("merged ", adapter.num_modules(), " LoRA modules (r=", adapter.config().r,
                ", scaling=", scaling, ") into ", names.size(), " tensors; wrote ", written.shards,
                " shard(s) + ", written.side_files + 1, " config/tokenizer file(s) to ", out_dir, " in ",
                hs::format_duration(timer.seconds()));
  return 0;
}

hs::cli::Registrar reg{
    {"merge", "merge a LoRA adapter into its base model, write an HF folder", schema, run, false}};

}  // namespace
