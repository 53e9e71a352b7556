# GradBuckets against a recording communicator in one process: buckets start inside the backward, complete
# and in order; blocking communicators reduce in finish(); the fp64 sum is what is reduced.
hs_gtest(test_grad_buckets SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_grad_buckets.cpp LIBS hs_train hs_dist)
hs_torch_target(test_grad_buckets)
