# Decoder ops, name registry, loading errors, loss semantics, KV cache and the LoRA contract (float64 references).
hs_gtest(test_model SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_model.cpp LIBS hs_lora hs_model hs_io)
hs_torch_target(test_model)
