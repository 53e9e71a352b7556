# dist::Communicator::sum_over_ranks (host vectors added in rank order) on the local communicator of one
# process and on the MPI one under mpiexec -n 3.
hs_gtest(test_communicator_sums SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_communicator_sums.cpp LIBS hs_dist
         MPI 1 3 TIMEOUT 120)
hs_torch_target(test_communicator_sums)
