# Data parallel on CPU: -np 1/2/4 with the same global batch agree to 1e-6 (loss, eval, adapter), a failing
# rank ends the job within 30 s, checkpoints resume at another world size, plans balance across ranks.
add_test(NAME train_world_equiv
         COMMAND ${HS_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/world_equiv.py ${MPIEXEC_EXECUTABLE}
         WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
set_tests_properties(train_world_equiv PROPERTIES ENVIRONMENT "${HS_TEST_ENV}" TIMEOUT 900
                     LABELS "mpi;train" PROCESSORS 2 SKIP_RETURN_CODE 77 DEPENDS hsloth)
