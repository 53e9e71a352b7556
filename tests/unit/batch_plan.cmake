hs_gtest(test_batch_plan SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_batch_plan.cpp LIBS hs_data)
