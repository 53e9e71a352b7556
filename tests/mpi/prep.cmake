# `mpirun -np 1/2/3 hsloth prep` writes byte-identical shards (records split over ranks, gathered on rank 0).
add_test(NAME prep_mpi_identical
         COMMAND ${HS_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/prep_identical.py ${MPIEXEC_EXECUTABLE}
         WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
set_tests_properties(prep_mpi_identical PROPERTIES ENVIRONMENT "${HS_TEST_ENV}" TIMEOUT 900 LABELS "mpi;data"
                     PROCESSORS 2 SKIP_RETURN_CODE 77 DEPENDS hsloth)
