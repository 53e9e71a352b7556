# Issue #15 on CPU over MPI: the bucketed gradient all-reduce (dist.bucket_mb) and ZeRO-1
# (dist.shard_optimizer) give the bits of one all-reduce after backward at -np 1/2/4; sharded checkpoints
# resume at another world size.
add_test(NAME train_dist_equiv
         COMMAND ${HS_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/dist_equiv.py ${MPIEXEC_EXECUTABLE}
         WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
set_tests_properties(train_dist_equiv PROPERTIES ENVIRONMENT "${HS_TEST_ENV}" TIMEOUT 900
                     LABELS "mpi;train" PROCESSORS 2 SKIP_RETURN_CODE 77 DEPENDS hsloth)
