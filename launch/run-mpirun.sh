# Sourced by train-node.sh and train-multinode.sh: `run_mpirun ARGS...` runs mpirun so that Ctrl-C keeps the
# run. Open MPI's mpirun answers SIGINT by sending the ranks SIGTERM and, a second later, SIGKILL: a step plus
# a checkpoint of a large model does not fit in that second. So mpirun runs in a session of its own (the
# terminal's Ctrl-C reaches only this script), and this script turns the first Ctrl-C (or a SIGTERM) into
# SIGUSR1 for mpirun and for this node's ranks: every rank finishes its step, rank 0 checkpoints, the job exits 75
# and `--train.resume auto` continues it. A second Ctrl-C aborts at once (SIGINT to mpirun).
run_mpirun() {
  setsid mpirun "$@" &
  local pid=$! stops=0 rc=0
  on_stop() {
    stops=$((stops + 1))
    if [ "$stops" -eq 1 ]; then
      echo "$(basename "$0"): stopping: the ranks finish their step and checkpoint (exit 75); Ctrl-C again aborts" \
        "without saving" >&2
      kill -USR1 "$pid" 2>/dev/null
      # Also straight to the ranks on this node (mpirun's session): on the GPU image's Open MPI 4.1.6 the
      # ranks went on after mpirun got SIGUSR1. One rank is enough: the ranks all-reduce the stop flag every
      # step, so ranks on other nodes stop at the same step.
      pkill -USR1 -s "$pid" 2>/dev/null || true
    else
      kill -INT "$pid" 2>/dev/null
    fi
  }
  trap on_stop INT TERM
  while :; do
    rc=0
    wait "$pid" || rc=$?
    kill -0 "$pid" 2>/dev/null || break  # wait returned for a signal: mpirun is still running
  done
  trap - INT TERM
  return "$rc"
}
