# GPU kernels against float64 / ATen references (label cuda; each test skips without a GPU).
if(HS_CUDA_ENABLED)
  hs_gtest(test_cuda_kernels SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_kernels.cpp LIBS hs_kernels hs_model LABELS cuda)
  hs_torch_target(test_cuda_kernels)
endif()
