# No host syncs in a training micro-batch (issue #12): a packed micro-batch's Model::loss forward + backward
# from host tensors under CUDA sync debug mode = error, and its loss bit-identical to HS_SYNC_INPUTS=1's
# blocking path (label cuda; skips without a GPU).
if(HS_CUDA_ENABLED)
  hs_gtest(test_cuda_input_sync SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_input_sync.cpp
           LIBS hs_model hs_lora LABELS cuda)
  hs_torch_target(test_cuda_input_sync)
endif()
