# io/json, the one JSON reader with positions: FILE:LINE:COLUMN of hand-placed errors, key paths, number
# overflows, and line_col itself.
hs_gtest(test_io_json SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_io_json.cpp LIBS hs_io)
