# The MPI communicator's float sums in rank order at every size (bucketed all-reduce and ZeRO-1 rely on it),
# reduce-scatter and all-gather, at 1, 3 and 4 ranks.
hs_gtest(test_communicator_order SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_communicator_order.cpp LIBS hs_dist
         MPI 1 3 4 TIMEOUT 120)
hs_torch_target(test_communicator_order)
