# `hsloth inspect --world N --grad-accum G` = what `hsloth train` runs and logs (micro-batches, padding,
# per-step tokens and imbalance in metrics.jsonl), on the shared sharegpt_500 / alpaca_tiny data; -np 2.
add_test(NAME train_inspect_matches
         COMMAND ${HS_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/inspect_matches_train.py ${MPIEXEC_EXECUTABLE}
         WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
set_tests_properties(train_inspect_matches PROPERTIES ENVIRONMENT "${HS_TEST_ENV}" TIMEOUT 600
                     LABELS "mpi;train;parity" PROCESSORS 2 SKIP_RETURN_CODE 77 DEPENDS hsloth)
