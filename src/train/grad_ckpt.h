// Gradient checkpointing per decoder layer: the forward runs the layer without keeping its activations and
// saves only its input (in host memory with offload); the backward recomputes the layer with autograd on
// and back-propagates through it. Parameters used inside the layer (LoRA A/B, or every weight in full
// fine-tuning) receive their gradients from that inner backward. The CPU and GPU RNG states are saved with
// the input and restored for the recomputation, so dropout masks are the same in both passes. With offload
// on a GPU the input goes to pinned host memory on a side stream and is prefetched back one layer ahead in
// the backward (double-buffered; see grad_ckpt.cpp); on the CPU offload keeps the input as `on` does.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

#include "model/model.h"

namespace hs::train {

enum class GradCkpt { off, on, offload };

GradCkpt parse_grad_ckpt(const std::string& name);

// A Model::LayerRunner that checkpoints every layer (training only: with grad mode off it calls the layer).
model::Model::LayerRunner checkpoint_runner(GradCkpt mode);
// Drops the layer calls kept for the backward; call after each micro-batch's backward.
void clear_checkpoint_calls();
// Bytes of pinned host memory held for offloaded layer inputs (a pool reused across steps; for tests/logs).
int64_t offload_pinned_bytes();

}  // namespace hs::train
