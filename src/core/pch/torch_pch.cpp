// Anchor translation unit for the LibTorch precompiled header (see torch_pch.h). It also holds the
// small build facts that need LibTorch, so `hsloth info` can print them without including LibTorch.
#include "core/build_info.h"

#include <torch/version.h>

namespace hs {
std::string libtorch_version() { return TORCH_VERSION; }
}  // namespace hs
