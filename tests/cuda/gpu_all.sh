#!/usr/bin/env bash
# Everything GPU in one device call (the lead's script): build, hsloth info, CUDA kernel tests, the model's
# bf16 parity vs transformers (tests/cuda/model_gpu.py), LoRA training vs HF + PEFT (train_gpu.py), and on a
# machine with 2+ GPUs the NCCL data-parallel checks and scaling (dist_gpu.py).
# Run from a clean snapshot whose testdata/ folder holds the shared tokenizers and datasets it needs.
#   bash tests/cuda/gpu_all.sh            # all of it
#   bash tests/cuda/gpu_all.sh dist       # build + dist_gpu.py only (on the multi-GPU machines)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
[ -f ../.device/env.sh ] && source ../.device/env.sh
[ -f .device/env.sh ] && source .device/env.sh
export HSLOTH_TESTDATA=${HSLOTH_TESTDATA:-$PWD/testdata}
OUT=${OUT:-$PWD/build-gpu/out}; mkdir -p "$OUT"
T0=$(date +%s)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release > "$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; exit 1; }
cmake --build build-gpu > "$OUT/build.log" 2>&1 || { grep -E "error" "$OUT/build.log" | head -30; exit 1; }
echo "build: $(( $(date +%s) - T0 ))s"
./build-gpu/hsloth info | tee "$OUT/info.txt"
status=0
if [ "${1:-all}" = dist ]; then
  shift
  python3 tests/cuda/dist_gpu.py build-gpu/hsloth "$@" 2>&1 | tee "$OUT/dist_gpu.log" | grep -vE "Writing|Loading" || status=1
  echo "gpu_all dist: status $status, $(( $(date +%s) - T0 ))s"
  exit $status
fi
ctest --test-dir build-gpu -L cuda -E '^train_gpu$' --output-on-failure 2>&1 | tee "$OUT/ctest_cuda.log" | grep -E "ok |FAIL|Passed|Failed|tests passed" || status=1
python3 tests/cuda/train_gpu.py build-gpu/hsloth 2>&1 | tee "$OUT/train_gpu.log" | grep -vE "Writing|Loading" || status=1
if [ "$(nvidia-smi -L 2>/dev/null | wc -l)" -ge 2 ]; then
  python3 tests/cuda/dist_gpu.py build-gpu/hsloth 2>&1 | tee "$OUT/dist_gpu.log" | grep -vE "Writing|Loading" || status=1
fi
echo "gpu_all: status $status, $(( $(date +%s) - T0 ))s"
exit $status
