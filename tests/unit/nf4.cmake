# NF4 (src/quant/nf4): code books, layout, round trips, the pre-quantized layout and bad inputs (CPU).
hs_gtest(test_nf4 SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_nf4.cpp LIBS hs_quant hs_model hs_io)
hs_torch_target(test_nf4)
