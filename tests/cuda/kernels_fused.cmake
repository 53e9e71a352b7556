# Fused SwiGLU and RoPE kernels against float64 and HF's formula under ATen autograd (label cuda; each GPU test
# skips without a GPU; the launcher shape checks run anywhere).
if(HS_CUDA_ENABLED)
  hs_gtest(test_cuda_kernels_fused SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_kernels_fused.cpp LIBS hs_kernels
           LABELS cuda)
  hs_torch_target(test_cuda_kernels_fused)
endif()
