// DenseLinear: the base projection through ops::linear (the one place a fused kernel would plug in).
#include "model/linear.h"

#include "model/ops.h"

namespace hs::model {

at::Tensor DenseLinear::forward(const at::Tensor& x, bool) const { return ops::linear(x, weight, bias); }

}  // namespace hs::model
