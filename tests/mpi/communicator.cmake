# dist::Communicator's byte collectives (all-gather, gather, broadcast) on the MPI communicator under
# mpiexec -n 2, and on the local one of a single process.
hs_gtest(test_communicator SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_communicator.cpp LIBS hs_dist MPI 2 TIMEOUT 120)
hs_torch_target(test_communicator)
