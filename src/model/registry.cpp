// Projection shapes and biases from an HfConfig; the names themselves are model/names.cpp's (see registry.h).
#include "model/registry.h"

namespace hs::model {

std::pair<int64_t, int64_t> proj_shape(const io::HfConfig& c, Proj p) {
  switch (p) {
    case Proj::q:
      return {c.q_dim(), c.hidden_size};
    case Proj::k:
    case Proj::v:
      return {c.kv_dim(), c.hidden_size};
    case Proj::o:
      return {c.hidden_size, c.q_dim()};
    case Proj::gate:
    case Proj::up:
      return {c.intermediate_size, c.hidden_size};
    case Proj::down:
      return {c.hidden_size, c.intermediate_size};
  }
  return {0, 0};
}

bool proj_has_bias(const io::HfConfig& c, Proj p) {
  switch (p) {
    case Proj::q:
    case Proj::k:
    case Proj::v:
      return c.qkv_bias;
    case Proj::o:
      return c.o_bias;
    default:
      return c.mlp_bias;
  }
}

}  // namespace hs::model
