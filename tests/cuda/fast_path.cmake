# The training fast paths of model/ops (LoRA with a hand-written backward, fused head + loss) against float64
# and the reference formulas (label cuda; skips without a GPU).
if(HS_CUDA_ENABLED)
  hs_gtest(test_cuda_fast_path SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_fast_path.cpp LIBS hs_model LABELS cuda)
  hs_torch_target(test_cuda_fast_path)
endif()
