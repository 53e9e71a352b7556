// NCCL facts for `hsloth info`: whether the NCCL path is compiled in and the library's version.
#pragma once

#include <string>

namespace hs::dist {

bool nccl_compiled();
// "2.28.9" from ncclGetVersion (the library actually loaded), or "" when not compiled in.
std::string nccl_version();

}  // namespace hs::dist
