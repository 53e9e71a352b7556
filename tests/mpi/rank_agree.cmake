# Ranks agree or stop (issue #10): mpirun MPMD jobs whose ranks differ in lora.r, train.max_steps, lora.targets
# or the model folder end within seconds with one error naming the key; the same model at another path trains;
# Ctrl-C under mpirun checkpoints; a data error on rank 1 saves the last completed step.
add_test(NAME train_rank_agree
         COMMAND ${HS_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/rank_agree.py ${MPIEXEC_EXECUTABLE}
         WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
set_tests_properties(train_rank_agree PROPERTIES ENVIRONMENT "${HS_TEST_ENV}" TIMEOUT 600
                     LABELS "mpi;train" PROCESSORS 2 SKIP_RETURN_CODE 77 DEPENDS hsloth)
# The agreement check itself on 2 ranks (equal facts pass), and the message it builds.
hs_gtest(test_rank_agree SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_rank_agree.cpp LIBS hs_dist MPI 2 TIMEOUT 120)
