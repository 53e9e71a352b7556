#!/usr/bin/env bash
# The body of slurm/train.sbatch and slurm/train-multinode.sbatch (sourced by them; not submitted itself):
# starts one hsloth rank per task of the allocation, forwards the preemption signal, and requeues the job
# when the run stopped at a checkpoint.
#
#   HS_LAUNCHER=auto|srun|mpirun   how ranks start (auto: `srun --mpi=pmix` when Slurm has the PMIx plugin,
#                                  else `mpirun`, which reads the allocation from Slurm by itself)
#   HSLOTH=path                    the binary (default: build/hsloth under the submit directory)
#
# Preemption: Slurm sends SIGUSR1 to this script 120 s before the time limit (#SBATCH --signal=B:USR1@120)
# or when `scancel --batch --signal=USR1 JOB` asks; the trap forwards it to the launcher, which forwards it to
# every rank; hsloth finishes the current step, writes a checkpoint and exits with code 75; the job is then
# requeued (scontrol requeue) and the requeued run continues from the newest checkpoint (--train.resume auto).
set -uo pipefail
CONFIG=${1:?usage: sbatch slurm/train.sbatch CONFIG.ini [--section.key value ...]}
shift
cd "${SLURM_SUBMIT_DIR:-.}"
HSLOTH=${HSLOTH:-build/hsloth}
[ -x "$HSLOTH" ] || { echo "hsloth: binary not found: $HSLOTH (build it, or set HSLOTH=...)" >&2; exit 1; }
LAUNCHER=${HS_LAUNCHER:-auto}
if [ "$LAUNCHER" = auto ]; then
  if srun --mpi=list 2>&1 | grep -qw pmix; then LAUNCHER=srun; else LAUNCHER=mpirun; fi
fi
case "$LAUNCHER" in
  srun) cmd=(srun --mpi=pmix "$HSLOTH") ;;  # a failing rank ends the step itself (MPI_Abort)
  mpirun) cmd=(mpirun --bind-to none -x PATH -x LD_LIBRARY_PATH "$HSLOTH") ;;
  *) echo "hsloth: HS_LAUNCHER must be auto, srun or mpirun (got '$LAUNCHER')" >&2; exit 2 ;;
esac
echo "hsloth: job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST:-?}:" \
     "${SLURM_NTASKS:-?} ranks via $LAUNCHER, config $CONFIG"
"${cmd[@]}" train --config "$CONFIG" --train.resume auto "$@" &
pid=$!
trap 'echo "hsloth: SIGUSR1 (preemption or time limit): the run checkpoints and stops"; kill -USR1 "$pid" 2>/dev/null' USR1
trap 'kill -TERM "$pid" 2>/dev/null' TERM
rc=0
while :; do
  wait "$pid"
  rc=$?
  kill -0 "$pid" 2>/dev/null || break  # a trapped signal interrupted wait; the run goes on
done
if [ "$rc" -eq 75 ]; then
  echo "hsloth: stopped at a checkpoint; requeueing job $SLURM_JOB_ID"
  # Let the finished step clean up first: requeueing kills what is left of it, and a step killed while
  # cleaning up can leave its PMIx socket behind, which makes the requeued run's first step fail to launch.
  for _ in $(seq 60); do
    [ -z "$(squeue -h -s -j "$SLURM_JOB_ID" -o %i 2>/dev/null | grep -v -e batch -e extern)" ] && break
    sleep 0.5
  done
  sleep 3
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
fi
echo "hsloth: exit code $rc"
exit "$rc"
