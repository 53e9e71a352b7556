#!/usr/bin/env bash
# Several nodes without Slurm: mpirun over a hostfile, one rank per GPU (on Slurm use
# slurm/train-multinode.sbatch instead).
#
#   bash launch/train-multinode.sh HOSTFILE --config run.ini [--section.key value ...]
#
# HOSTFILE lists one node per line with its GPU count, e.g. `node01 slots=8` (see launch/hostfile.example).
# Every node needs the same checkout path (or HSLOTH=/shared/path/hsloth), the model and shards on a shared
# or identically laid-out filesystem, and passwordless ssh from the first node. Ranks fill the nodes in
# order (ppr:<slots>:node); each picks its GPU from its node-local rank. NCCL variables set here (NCCL_DEBUG,
# NCCL_SOCKET_IFNAME, NCCL_IB_HCA, NCCL_P2P_LEVEL, HSLOTH_NCCL_TIMEOUT) are exported to every rank; see
# launch/train-node.sh for what they do. HS_MPIRUN_ARGS adds mpirun arguments (e.g. "--mca btl_tcp_if_include eth0").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
HOSTFILE=${1:?usage: bash launch/train-multinode.sh HOSTFILE --config run.ini [...]}
shift
[ -f "$HOSTFILE" ] || { echo "train-multinode.sh: hostfile $HOSTFILE not found" >&2; exit 1; }
H=${HSLOTH:-$PWD/build/hsloth}
NODES=$(grep -v '^\s*#' "$HOSTFILE" | grep -c .)
PER=$(grep -v '^\s*#' "$HOSTFILE" | grep -o 'slots=[0-9]*' | head -1 | cut -d= -f2)
PER=${PER:-1}
NP=$((NODES * PER))
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ARGS=(-np "$NP" --hostfile "$HOSTFILE" --map-by "ppr:$PER:node" --bind-to none -x PATH -x LD_LIBRARY_PATH)
for v in NCCL_DEBUG NCCL_P2P_LEVEL NCCL_SOCKET_IFNAME NCCL_IB_HCA HSLOTH_NCCL_TIMEOUT; do
  [ -n "${!v:-}" ] && ARGS+=(-x "$v")
done
echo "train-multinode.sh: $NODES node(s) x $PER rank(s) = $NP ranks"
set -x
# shellcheck disable=SC2086
exec mpirun "${ARGS[@]}" ${HS_MPIRUN_ARGS:-} "$H" train "$@"
