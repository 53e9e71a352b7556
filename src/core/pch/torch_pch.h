// The LibTorch precompiled header: compiled once into hs_torch_pch and force-included into every
// target that links LibTorch (cmake/HsTargets.cmake). Keep it to headers that nearly all of them use.
#pragma once

#include <ATen/ATen.h>
#include <torch/types.h>
