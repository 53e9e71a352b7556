// Build facts baked in by CMake as compile definitions (version, build type, compiler, CUDA/NCCL compiled
// in, CUDA archs), returned as one struct for `hsloth info` and the run's metadata; see build_info.h.
#include "core/build_info.h"

namespace hs {

const BuildInfo& build_info() {
  static const BuildInfo info{HS_VERSION, HS_BUILD_TYPE, HS_CXX_COMPILER, HS_CUDA_ARCHS, HS_CUDA_COMPILED != 0,
                              HS_NCCL_COMPILED != 0};
  return info;
}

}  // namespace hs
