# A real single-node Slurm (slurm-wlm + munge, private daemons in a temp dir) runs slurm/train.sbatch with
# 2 CPU tasks through srun --mpi=pmix and mpirun, and a preempted job requeues and resumes (label slurm).
add_test(NAME slurm_ci COMMAND ${HS_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/slurm_ci.py WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(slurm_ci PROPERTIES ENVIRONMENT "${HS_TEST_ENV}" TIMEOUT 900 LABELS "slurm;mpi"
                     PROCESSORS 2 SKIP_RETURN_CODE 77 DEPENDS hsloth)
