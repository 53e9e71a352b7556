// The element type a kernel launcher works on, shared by every launcher in kernels/.
#pragma once

namespace hs::kernels {

enum class DType : int { f32 = 0, bf16 = 1 };

}  // namespace hs::kernels
