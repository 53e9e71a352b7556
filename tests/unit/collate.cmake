# data::collate_rows(): BatchPlan micro-batches laid out as packed or padded rows, against layouts written by hand.
hs_gtest(test_collate SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_collate.cpp LIBS hs_data)
