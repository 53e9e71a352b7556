# NF4 GPU kernels (kernels/nf4.cu) against the CPU reference of src/quant/nf4 (label cuda; skips without a GPU).
if(HS_CUDA_ENABLED)
  hs_gtest(test_nf4_gpu SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_nf4_gpu.cpp LIBS hs_quant hs_lora hs_kernels hs_model LABELS cuda)
  hs_torch_target(test_nf4_gpu)
endif()
