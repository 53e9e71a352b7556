// NCCL facts for `hsloth info` (see nccl_info.h): compiled in or not, and the library version.
#include "dist/nccl_info.h"

#ifdef HS_HAVE_NCCL
#include <nccl.h>
#endif

namespace hs::dist {

bool nccl_compiled() {
#ifdef HS_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

std::string nccl_version() {
#ifdef HS_HAVE_NCCL
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "";
  // NCCL >= 2.9 encodes major*10000 + minor*100 + patch.
  return std::to_string(v / 10000) + "." + std::to_string((v % 10000) / 100) + "." + std::to_string(v % 100);
#else
  return "";
#endif
}

}  // namespace hs::dist
