// `hsloth info`: what this build is and what it sees, for bug reports and cluster checks: LibTorch
// version and whether CUDA is compiled in, visible GPUs, NCCL, MPI library, HDF5, CPU threads, and the
// fine-tuning modes (LoRA, QLoRA on an NF4 base, full).
// `--json` prints the same as one JSON object.
#include <cmath>
#include <thread>

#include <torch/cuda.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/build_info.h"
#include "core/error.h"
#include "core/timer.h"
#include "data/hdf5_util.h"
#include "dist/mpi_runtime.h"
#include "dist/nccl_info.h"
#include "model/runtime.h"
#if HS_CUDA_COMPILED
#include "kernels/device_info.h"
#endif

namespace {

hs::config::Schema schema() {
  hs::config::Schema s("info", "[--json]", "Build, library and hardware facts of this machine.");
  s.flag("json", "print one JSON object instead of text");
  s.config_file(false);
  return s;
}

int run(const hs::config::Config& cfg) {
  const auto& b = hs::build_info();
  nlohmann::ordered_json j;
  j["hsloth"] = b.version;
  j["build_type"] = b.build_type;
  j["compiler"] = b.compiler;
  j["libtorch"] = hs::libtorch_version();
  j["cuda_compiled"] = b.cuda_compiled;
  j["cuda_archs"] = b.cuda_compiled ? b.cuda_archs : "";
  j["libtorch_cuda_devices"] = int(torch::cuda::device_count());
  nlohmann::ordered_json gpus = nlohmann::json::array();
#if HS_CUDA_COMPILED
  j["cuda_runtime"] = hs::kernels::cuda_runtime_version();
  j["cuda_driver"] = hs::kernels::cuda_driver_version();
  for (const auto& d : hs::kernels::visible_devices())
    gpus.push_back(
        {{"index", d.index},
         {"name", d.name},
         {"compute_capability", std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor)},
         {"multiprocessors", d.multiprocessors},
         {"clock_mhz", d.clock_khz / 1000},
         {"peak_bf16_tflops",  // what MFU is measured against (model/runtime.h)
          std::round(hs::model::peak_bf16_flops(d.cc_major, d.cc_minor, d.multiprocessors, d.clock_khz) /
                     1e10) /
              100},
         {"memory_total", d.total_memory},
         {"memory_free", d.free_memory}});
#endif
  j["gpus"] = gpus;
  j["nccl_compiled"] = hs::dist::nccl_compiled();
  j["nccl"] = hs::dist::nccl_version();
  j["mpi"] = hs::dist::Mpi::library_version();
  j["hdf5"] = hs::data::hdf5_version();
  j["cpu_threads"] = std::thread::hardware_concurrency();
  j["finetune"] = {"lora", "qlora", "full"};
  // QLoRA's base (hs::quant): bitsandbytes NF4, quantized at load or read from a pre-quantized folder.
  j["qlora_nf4"] = b.cuda_compiled ? "CUDA kernels (CPU reference on the CPU)" : "CPU reference";

  if (cfg.get_bool("json")) {
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  auto line = [](const char* k, const std::string& v) { std::printf("%-14s %s\n", k, v.c_str()); };
  line("hsloth", b.version + " (" + b.build_type + ", " + b.compiler + ")");
  line("LibTorch", hs::libtorch_version() +
                       (b.cuda_compiled ? " — CUDA compiled in (kernels for arch " + b.cuda_archs + ")"
                                        : " — CPU only (no CUDA compiled in)"));
  if (b.cuda_compiled) {
    std::string drv = j.value("cuda_driver", "");
    line("CUDA", "runtime " + j.value("cuda_runtime", "") + ", driver " + (drv.empty() ? "not found" : drv));
  }
  if (gpus.empty()) {
    line("GPUs", b.cuda_compiled ? "none visible (CPU training only)" : "not checked (CPU-only build)");
  } else {
    for (const auto& g : gpus)
      line(("GPU " + std::to_string(g["index"].get<int>())).c_str(),
           g["name"].get<std::string>() + ", compute " + g["compute_capability"].get<std::string>() + ", " +
               std::to_string(g["multiprocessors"].get<int>()) + " SMs at " +
               std::to_string(g["clock_mhz"].get<int>()) + " MHz (dense bf16 peak " +
               (g["peak_bf16_tflops"].get<double>() > 0
                    ? hs::str(g["peak_bf16_tflops"].get<double>(), " TFLOP/s")
                    : std::string("unknown")) +
               "), " + hs::format_bytes(double(g["memory_total"].get<int64_t>())) + " (" +
               hs::format_bytes(double(g["memory_free"].get<int64_t>())) + " free)");
  }
  line("NCCL", hs::dist::nccl_compiled() ? j["nccl"].get<std::string>() + " (GPU all-reduce)"
                                         : "not compiled in (multi-rank runs use MPI all-reduce)");
  line("MPI", j["mpi"].get<std::string>());
  line("HDF5", j["hdf5"].get<std::string>());
  line("CPU threads", std::to_string(std::thread::hardware_concurrency()));
  line("fine-tuning",
       "lora, qlora (LoRA on a 4-bit bitsandbytes NF4 base: quantized at load with finetune = "
       "qlora / --quant nf4, or a pre-quantized bnb-4bit folder), full");
  line("NF4", j["qlora_nf4"].get<std::string>());
  return 0;
}

hs::cli::Registrar reg{{"info", "build and hardware facts", schema, run, false}};

}  // namespace
