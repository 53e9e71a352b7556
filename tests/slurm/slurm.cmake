# A real single-node Slurm (slurm-wlm + munge, private daemons in a temp dir) runs slurm/train.sbatch and
# slurm/train-multinode.sbatch with 2 CPU tasks through srun --mpi=pmix and mpirun; a job preempted with
# SIGUSR1 requeues and resumes from its checkpoint, and scancel is not turned into a requeue (label slurm).
# Needs root and the Slurm binaries (launch/setup.sh --test-deps); skips (77) without them. ~70 s on 2 cores.
hs_pytest(slurm_ci SCRIPT ${CMAKE_CURRENT_LIST_DIR}/slurm_ci.py TIMEOUT 600)
# Two ranks per job: nothing else beside it on a 2-core machine (ctest -j2).
set_tests_properties(slurm_ci PROPERTIES LABELS "slurm;mpi" PROCESSORS 2)
