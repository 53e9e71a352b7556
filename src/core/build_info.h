// Build facts for `hsloth info` and run metadata: version, compiler, what was compiled in.
#pragma once

#include <string>

namespace hs {

struct BuildInfo {
  std::string version, build_type, compiler, cuda_archs;
  bool cuda_compiled = false, nccl_compiled = false;
};

const BuildInfo& build_info();
// LibTorch version string (defined in core/pch/torch_pch.cpp, the only core file that sees LibTorch).
std::string libtorch_version();

}  // namespace hs
