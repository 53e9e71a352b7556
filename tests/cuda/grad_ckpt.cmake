# Gradient checkpointing on the GPU: off / on / offload give the same loss and LoRA gradients (on = offload
# bit for bit), and offload's peak device memory is below on's by the layer inputs (label cuda; skips without
# a GPU).
if(HS_CUDA_ENABLED)
  hs_gtest(test_cuda_grad_ckpt SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_grad_ckpt_offload.cpp
           LIBS hs_train LABELS cuda)
  hs_torch_target(test_cuda_grad_ckpt)
endif()
