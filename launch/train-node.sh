#!/usr/bin/env bash
# One node: one hsloth rank per GPU through mpirun (NCCL all-reduce between them); on a machine without
# GPUs, HS_NP ranks (default 2) train on the CPU over MPI.
#
#   bash launch/train-node.sh --config run.ini [--section.key value ...]
#
# Environment: HS_NP (ranks; default = GPUs seen by nvidia-smi, or the entries of CUDA_VISIBLE_DEVICES),
# HSLOTH (binary; default build/hsloth), HS_MPIRUN_ARGS (extra mpirun arguments).
#
# Binding: --bind-to none lets each rank's data-loading and LibTorch threads use the cores of its socket;
# ranks pick their GPU from their node-local rank (CUDA_VISIBLE_DEVICES restricts which GPUs are used).
# NCCL environment worth knowing (exported to every rank with -x by this script when set):
#   NCCL_DEBUG=WARN|INFO      why NCCL chose a transport, and errors in words
#   NCCL_P2P_LEVEL=NVL        insist on NVLink between GPUs of the node (fail instead of falling back to PCIe)
#   NCCL_SOCKET_IFNAME=eth0   the interface for bootstrap/socket traffic (multi-node)
#   NCCL_IB_HCA=mlx5          the InfiniBand adapters to use (multi-node)
#   HSLOTH_NCCL_TIMEOUT=600   seconds a collective may take before the rank reports a lost peer and the job ends
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
H=${HSLOTH:-build/hsloth}
[ -x "$H" ] || { echo "train-node.sh: $H not found: run bash launch/setup.sh (or set HSLOTH=...)" >&2; exit 1; }
if [ -n "${HS_NP:-}" ]; then
  NP=$HS_NP
elif [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
  NP=$(echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c .)
else
  NP=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  [ "${NP:-0}" -gt 0 ] || NP=2
fi
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ARGS=(-np "$NP" --bind-to none)
[ "$(nproc)" -lt "$NP" ] && ARGS+=(--oversubscribe)
for v in NCCL_DEBUG NCCL_P2P_LEVEL NCCL_SOCKET_IFNAME NCCL_IB_HCA HSLOTH_NCCL_TIMEOUT CUDA_VISIBLE_DEVICES LD_LIBRARY_PATH; do
  [ -n "${!v:-}" ] && ARGS+=(-x "$v")
done
# shellcheck disable=SC2086
set -x
exec mpirun "${ARGS[@]}" ${HS_MPIRUN_ARGS:-} "$H" train "$@"
