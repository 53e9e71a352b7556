#!/usr/bin/env bash
# Several nodes without Slurm: mpirun over a hostfile, one rank per GPU (on Slurm use
# slurm/train-multinode.sbatch instead).
#
#   bash launch/train-multinode.sh HOSTFILE --config run.ini [--section.key value ...]
#
# HOSTFILE lists one node per line with its GPU count, e.g. `node01 slots=8` (see launch/hostfile.example);
# every node gets the first line's slots ranks (ppr:<slots>:node), filled in file order, and each rank picks
# its GPU from its node-local rank. Every node needs the hsloth binary at the same path (HSLOTH=/shared/path/
# hsloth; default build/hsloth of this checkout), the model and shards at the same paths (relative paths
# resolve in this directory, the same on every node), and passwordless ssh from this node to the others.
# NCCL variables set here (NCCL_DEBUG, NCCL_SOCKET_IFNAME, NCCL_IB_HCA, NCCL_P2P_LEVEL, NCCL_P2P_DISABLE,
# HSLOTH_NCCL_TIMEOUT) are passed to every rank; see launch/train-node.sh for what they do. Typical for
# InfiniBand: NCCL_IB_HCA=mlx5 NCCL_SOCKET_IFNAME=ib0 (bootstrap) or =eth0; NCCL_DEBUG=INFO shows whether
# NCCL uses NET/IB (fast) or fell back to NET/Socket. HS_MPIRUN_ARGS adds mpirun arguments, e.g.
# "--mca btl_tcp_if_include eth0" (the interface Open MPI's own traffic uses; NCCL carries the gradients).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOSTFILE=${1:?usage: bash launch/train-multinode.sh HOSTFILE --config run.ini [...]}
shift
[ -f "$HOSTFILE" ] || { echo "train-multinode.sh: hostfile $HOSTFILE not found" >&2; exit 1; }
if [ -z "${HSLOTH:-}" ]; then
  if [ -x "$ROOT/build/hsloth" ]; then HSLOTH=$ROOT/build/hsloth; else HSLOTH=$(command -v hsloth || true); fi
fi
if [ -z "$HSLOTH" ] || [ ! -x "$HSLOTH" ]; then
  echo "train-multinode.sh: hsloth not found (${HSLOTH:-no $ROOT/build/hsloth}): set HSLOTH=..." >&2
  exit 1
fi
NODES=$(grep -v '^\s*#' "$HOSTFILE" | grep -c '[^[:space:]]' || true)
PER=$(grep -v '^\s*#' "$HOSTFILE" | grep -o 'slots=[0-9]*' | head -1 | cut -d= -f2 || true)
PER=${PER:-1}
NP=$((NODES * PER))
[ "$NP" -gt 0 ] || { echo "train-multinode.sh: no nodes in $HOSTFILE" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ARGS=(-np "$NP" --hostfile "$HOSTFILE" --map-by "ppr:$PER:node" --bind-to none -x PATH)
for v in LD_LIBRARY_PATH NCCL_DEBUG NCCL_P2P_LEVEL NCCL_P2P_DISABLE NCCL_SOCKET_IFNAME NCCL_IB_HCA HSLOTH_NCCL_TIMEOUT \
         OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM; do
  [ -n "${!v+set}" ] && ARGS+=(-x "$v")
done
echo "train-multinode.sh: $NODES node(s) x $PER rank(s) = $NP ranks"
# shellcheck source=launch/run-mpirun.sh
source "$(dirname "${BASH_SOURCE[0]}")/run-mpirun.sh"
set -x
# shellcheck disable=SC2086
run_mpirun "${ARGS[@]}" ${HS_MPIRUN_ARGS:-} "$HSLOTH" train "$@"
