hs_gtest(test_config SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_config.cpp LIBS hs_config)
