// nf4_tool: hs::quant's NF4 driven from Python (nf4_bnb.py compares it with bitsandbytes):
//   nf4_tool dequant IN OUT [NAME]   every NF4 weight of IN (transformers' pre-quantized layout, read_nf4),
//                                    or only NAME, dequantized on the CPU into OUT under its name
//   nf4_tool quant IN OUT            every floating tensor of IN quantized (quantize_nf4) and written to OUT
//                                    in that layout (nf4_tensors_for_save)
//   nf4_tool dequant-cuda|quant-cuda IN OUT   the same on the GPU (CUDA builds: kernels/nf4.cu)
//   nf4_tool info                    "cuda 1" when built with the CUDA kernels and a GPU is visible
// Errors print hs::Error's message and exit 1.
#include <cstdio>
#include <string>
#include <vector>

#include <torch/cuda.h>

#include "core/build_info.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/tensor_io.h"
#include "quant/nf4.h"

namespace {

void write(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  std::vector<hs::model::HostTensor> host;
  for (const auto& [name, t] : tensors) host.push_back(hs::model::to_host(name, t));
  std::vector<hs::io::TensorRef> refs;
  for (const auto& h : host) refs.push_back(h.ref());
  hs::io::write_safetensors(path, refs, {{"format", "pt"}});
}

int run(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "info") {
    std::printf("cuda %d\n", int(hs::build_info().cuda_compiled && torch::cuda::is_available()));
    return 0;
  }
  if (argc != 4 && argc != 5) throw hs::Error("usage: nf4_tool dequant|quant[-cuda] IN OUT [NAME] | info");
  std::string cmd = argv[1];
  at::Device dev = at::kCPU;
  if (cmd.size() > 5 && cmd.compare(cmd.size() - 5, 5, "-cuda") == 0) {
    dev = at::kCUDA;
    cmd = cmd.substr(0, cmd.size() - 5);
  }
  const hs::io::Checkpoint ck = hs::io::Checkpoint::open(argv[2]);
  std::vector<std::pair<std::string, at::Tensor>> out;
  const std::string suffix = ".quant_state.bitsandbytes__nf4";
  if (cmd == "dequant" && argc == 5) {
    const std::string w = argv[4];
    if (!hs::quant::has_nf4(ck, w)) throw hs::Error("has_nf4 is false for " + w);
    out.emplace_back(w, hs::quant::dequantize_nf4(hs::quant::read_nf4(ck, w, dev)).to(at::kCPU));
  } else if (cmd == "dequant") {
    for (const std::string& n : ck.names()) {
      if (n.size() <= suffix.size() || n.compare(n.size() - suffix.size(), suffix.size(), suffix) != 0)
        continue;
      const std::string w = n.substr(0, n.size() - suffix.size());
      if (!hs::quant::has_nf4(ck, w)) throw hs::Error("has_nf4 is false for " + w);
      out.emplace_back(w, hs::quant::dequantize_nf4(hs::quant::read_nf4(ck, w, dev)).to(at::kCPU));
    }
  } else if (cmd == "quant") {
    for (const std::string& n : ck.names()) {
      const at::Tensor t = hs::model::load_tensor(ck.get(n), at::ScalarType::Undefined, at::kCPU);
      if (!at::isFloatingType(t.scalar_type())) continue;
      for (auto& p : hs::quant::nf4_tensors_for_save(n, hs::quant::quantize_nf4(t.to(dev))))
        out.push_back(std::move(p));
    }
  } else {
    throw hs::Error("unknown command " + cmd);
  }
  write(argv[3], out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
