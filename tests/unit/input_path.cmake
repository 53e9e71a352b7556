# Model::loss from host tensors (issue #12) on the CPU: the sync-free input path equals HS_SYNC_INPUTS=1's
# blocking path bit for bit (loss, target count, LoRA gradients) and reports bad token ids the same way.
hs_gtest(test_input_path SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_input_path.cpp
         LIBS hs_model hs_lora LABELS "model;train")
hs_torch_target(test_input_path)
