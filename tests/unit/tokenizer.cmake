# Tokenizer (src/tokenizer): shared vectors, round trips, added-token flags, offsets, loader errors.
hs_gtest(test_tokenizer SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_tokenizer.cpp LIBS hs_tokenizer LABELS tokenizer)
