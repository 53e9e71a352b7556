hs_gtest(test_mpi_runtime SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_mpi_runtime.cpp LIBS hs_dist MPI 2 4 TIMEOUT 120)
