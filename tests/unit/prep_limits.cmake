# Prep's memory bound, out-of-memory reporting, --max-len default, full disk, and fuzzed tokenizer files
# (issue #10): encode_limited against full encodes, and `hsloth prep` runs measured by the kernel.
hs_gtest(test_prep_limits SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_prep_limits.cpp
         LIBS hs_data_tools hs_data hs_tokenizer TIMEOUT 300)
