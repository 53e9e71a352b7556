# model/generate: the KV-cached Decoder, greedy exact-match check and generation loop against decoding that
# recomputes the whole sequence without a cache, on a tiny random llama.
hs_gtest(test_generate SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_generate.cpp LIBS hs_model hs_io)
hs_torch_target(test_generate)
