#!/usr/bin/env bash
# GPU checks of the model (issue 4), for the GPU machine: builds model_probe and hsloth in build-gpu and runs
# the cuda-labelled model test (bf16 logits/loss/LoRA gradients vs transformers on the same GPU for
# Llama-3.2-1B- and Qwen3-0.6B-shaped random models), then the CPU parity tests of the model against
# transformers/PEFT as a cross-check of that machine's toolchain. Logs and model_gpu.json go to $OUT.
#
#   bash tests/cuda/gpu_parity.sh            (from the repository root or anywhere)
#   HS_GPU_PARITY_CPU=0 bash tests/cuda/gpu_parity.sh    (skip the CPU parity tests)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT=${OUT:-$PWD/build-gpu/gpu-parity}
mkdir -p "$OUT"
export OUT
[ -f .device/env.sh ] && source .device/env.sh
T0=$(date +%s)
{
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release &&
    cmake --build build-gpu --target model_probe hsloth test_safetensors
} >"$OUT/build.log" 2>&1
rc=$?
echo "build: rc=$rc in $(( $(date +%s) - T0 ))s (log: $OUT/build.log)"
if [ $rc -ne 0 ]; then
  tail -40 "$OUT/build.log"
  exit $rc
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$OUT/gpu.txt" 2>&1 || true
status=0
T1=$(date +%s)
ctest --test-dir build-gpu -L cuda -R '^model_gpu$' --output-on-failure 2>&1 | tee "$OUT/model_gpu.log" || status=1
grep -q "tests passed, 0 tests failed" "$OUT/model_gpu.log" || status=1
grep -q "Skipped\|Not Run" "$OUT/model_gpu.log" && { echo "model_gpu did not run (no GPU?)"; status=1; }
echo "model_gpu: $(( $(date +%s) - T1 ))s"
if [ "${HS_GPU_PARITY_CPU:-1}" != "0" ]; then
  ctest --test-dir build-gpu -R '^(model_parity|model_cli|Safetensors\.|HfConfig\.)' --output-on-failure -j 4 \
    2>&1 | tee "$OUT/model_cpu_parity.log" || status=1
fi
echo "gpu_parity.sh: status $status, $(( $(date +%s) - T0 ))s total; results in $OUT"
exit $status
