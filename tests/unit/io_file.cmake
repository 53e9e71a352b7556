hs_gtest(test_io_file SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_io_file.cpp LIBS hs_io)
