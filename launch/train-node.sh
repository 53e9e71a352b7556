#!/usr/bin/env bash
# One node: one hsloth rank per GPU through mpirun (NCCL all-reduce between them); on a machine without
# GPUs, HS_NP ranks (default 2) train on the CPU over MPI.
#
#   bash launch/train-node.sh --config run.ini [--section.key value ...]     # all args go to `hsloth train`
#   HS_NP=4 bash launch/train-node.sh --config run.ini                       # 4 ranks
#
# Paths are as with hsloth itself: on the command line relative to where you run this, in the config file
# relative to the file's folder. Ctrl-C (or SIGTERM) makes the ranks finish their step and checkpoint (exit 75;
# continue with --train.resume auto); a second Ctrl-C aborts (launch/run-mpirun.sh says why).
# Environment: HS_NP (ranks; default = the GPUs in CUDA_VISIBLE_DEVICES if set, else those nvidia-smi lists,
# else 2 on the CPU), HSLOTH (binary; default build/hsloth of this checkout, else hsloth on PATH),
# HS_MPIRUN_ARGS (extra mpirun arguments). As root (containers), Open MPI's root check is switched off.
#
# Binding: --bind-to none lets each rank's data-loading and LibTorch threads use any core (hsloth divides the
# cores among the ranks of a node when it trains on the CPU). On a two-socket 8-GPU node, keeping each rank on
# its GPU's socket can help: HS_MPIRUN_ARGS="--map-by ppr:4:socket --bind-to socket" (check `nvidia-smi topo
# -m` for which GPUs hang off which socket). Ranks pick their GPU from their node-local rank; to use only
# some GPUs, set CUDA_VISIBLE_DEVICES=0,1 (then 2 ranks).
#
# NCCL environment worth knowing (passed to every rank):
#   NCCL_DEBUG=WARN|INFO      errors in words; INFO also shows the transport NCCL chose (P2P/NVL, SHM, NET)
#   NCCL_P2P_LEVEL=NVL        use GPU peer-to-peer only over NVLink (PCIe P2P can be slow or broken on some boards)
#   NCCL_P2P_DISABLE=1        no peer-to-peer at all (through host memory): a workaround for hangs in P2P
#   NCCL_SOCKET_IFNAME=eth0   the interface for bootstrap/socket traffic (matters with many interfaces)
#   NCCL_IB_HCA=mlx5          the InfiniBand adapters to use (multi-node; see launch/train-multinode.sh)
#   HSLOTH_NCCL_TIMEOUT=600   seconds a collective may take before the rank reports a lost peer and the job ends
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${HSLOTH:-}" ]; then
  if [ -x "$ROOT/build/hsloth" ]; then HSLOTH=$ROOT/build/hsloth; else HSLOTH=$(command -v hsloth || true); fi
fi
if [ -z "$HSLOTH" ] || [ ! -x "$HSLOTH" ]; then
  echo "train-node.sh: hsloth not found (${HSLOTH:-no $ROOT/build/hsloth}): run bash launch/setup.sh, or set HSLOTH=..." >&2
  exit 1
fi
if [ -n "${HS_NP:-}" ]; then
  NP=$HS_NP
elif [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then  # set: exactly these GPUs (empty: none, so the CPU)
  NP=$(echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c '[0-9A-Za-z]' || true)
  [ "$NP" -gt 0 ] || NP=2
else
  NP=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  [ "${NP:-0}" -gt 0 ] || NP=2
fi
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ARGS=(-np "$NP" --bind-to none)
[ "$(nproc)" -lt "$NP" ] && ARGS+=(--oversubscribe)
for v in NCCL_DEBUG NCCL_P2P_LEVEL NCCL_P2P_DISABLE NCCL_SOCKET_IFNAME NCCL_IB_HCA HSLOTH_NCCL_TIMEOUT CUDA_VISIBLE_DEVICES; do
  [ -n "${!v+set}" ] && ARGS+=(-x "$v")
done
echo "train-node.sh: $NP rank(s) on $(hostname -s)"
# shellcheck source=launch/run-mpirun.sh
source "$(dirname "${BASH_SOURCE[0]}")/run-mpirun.sh"
set -x
# shellcheck disable=SC2086
run_mpirun "${ARGS[@]}" ${HS_MPIRUN_ARGS:-} "$HSLOTH" train "$@"
