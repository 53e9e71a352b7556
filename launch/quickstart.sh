#!/usr/bin/env bash
# The README's first command: set up, build, and run the main job on the built-in demo.
#
#   bash launch/quickstart.sh [OUT_DIR]      (default: runs/demo)
#
# The demo: a synthetic instruction task with exact-match answers (one key word, an animal, a country or an
# adjective, hidden among filler words; the answer is its sound, capital or opposite) and a small byte-level
# BPE tokenizer trained on it, plus a tiny random Llama (launch/demo/make_demo.py --model). The data goes
# through `hsloth prep` into HDF5 shards and `hsloth inspect`, then `mpirun -np 2 hsloth train`
# (configs/demo.ini: full fine-tuning from scratch, data parallel over MPI on the CPU, or one rank per GPU
# with NCCL when there are GPUs) prints eval loss and exact-match on held-out prompts before, during and
# after training. Outputs: OUT_DIR/run (metrics.jsonl, TensorBoard, checkpoints, final model).
#
# Environment: HSLOTH (the binary; default build/hsloth), HS_SKIP_SETUP=1 (skip launch/setup.sh),
# HS_PYTHON (default .venv/bin/python), HS_NP (ranks; default: the number of GPUs, else 2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${1:-runs/demo}
T0=$(date +%s)
[ "${HS_SKIP_SETUP:-0}" = 1 ] || bash launch/setup.sh
PY=${HS_PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3  # with HS_SKIP_SETUP=1 on a machine set up otherwise
H=${HSLOTH:-${HS_BUILD_DIR:-build}/hsloth}
"$PY" -c 'import tokenizers' 2>/dev/null || "$PY" -m pip install -q --disable-pip-version-check "tokenizers==0.23.3"
T1=$(date +%s)

printf '\n== hsloth info\n'
"$H" info

printf '\n== demo data and tokenizer -> %s\n' "$OUT"
"$PY" launch/demo/make_demo.py "$OUT" --model
printf 'for example: %s\n' "$(head -1 "$OUT/eval.jsonl")"

printf '\n== hsloth prep (train and eval shards)\n'
for split in train eval; do
  "$H" prep --input "$OUT/$split.jsonl" --tokenizer "$OUT/model" --out "$OUT/shards/$split" --loss response \
    --template chatml --overwrite
done
printf '\n== hsloth inspect\n'
"$H" inspect "$OUT/shards/train" --world 2

# Ranks: one per GPU, else 2 on the CPU. Each step takes 2 micro-batches in all, whatever the rank count.
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
NP=${HS_NP:-$([ "${GPUS:-0}" -gt 0 ] && echo "$GPUS" || echo 2)}
EXTRA=()
[ "$NP" -eq 1 ] && EXTRA=(--train.grad_accum 2)
LAUNCH=()
if [ "$NP" -gt 1 ]; then
  if command -v mpirun >/dev/null; then
    [ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    SLOTS=$(nproc)
    LAUNCH=(mpirun -np "$NP" --bind-to none)
    [ "$SLOTS" -lt "$NP" ] && LAUNCH+=(--oversubscribe)
  else
    echo "quickstart: mpirun not found; training in one process (launch/setup.sh installs Open MPI)"
    NP=1
    EXTRA=(--train.grad_accum 2)
  fi
fi
printf '\n== %s hsloth train (configs/demo.ini, %s rank%s)\n' "${LAUNCH[*]:-}" "$NP" "$([ "$NP" -gt 1 ] && echo s)"
rm -rf "$OUT/run"
T2=$(date +%s)
"${LAUNCH[@]}" "$H" train --config configs/demo.ini --model.path "$OUT/model" --data.train "$OUT/shards/train" \
  --data.eval "$OUT/shards/eval" --run.dir "$OUT/run" "${EXTRA[@]}" < /dev/null
T3=$(date +%s)

printf '\n== summary (from %s/run/metrics.jsonl)\n' "$OUT"
"$PY" - "$OUT/run/metrics.jsonl" <<'PYEOF'
import json, sys
rows = [json.loads(x) for x in open(sys.argv[1]) if x.strip()]
ev = [r for r in rows if "eval_loss" in r]
steps = [r for r in rows if "loss" in r]
for r in ev:
    em = f"{100 * r['exact_match']:.0f}%" if "exact_match" in r else "-"
    print(f"  step {r['step']:4d}: eval loss {r['eval_loss']:.4f}  exact-match {em}")
if ev:
    a, b = ev[0], ev[-1]
    print(f"  eval loss {a['eval_loss']:.3f} -> {b['eval_loss']:.3f}, exact-match on held-out prompts "
          f"{100 * a.get('exact_match', 0):.0f}% -> {100 * b.get('exact_match', 0):.0f}%")
if steps:
    print(f"  {steps[-1]['step']} steps, {steps[-1]['tokens_per_s']:,.0f} tokens/s at the end")
PYEOF
echo "  outputs: $OUT/run (metrics.jsonl, tensorboard/, checkpoints/, final/ = the trained model as an HF folder)"
echo "quickstart: done in $(( $(date +%s) - T0 ))s (setup $(( T1 - T0 ))s, data+prep+inspect $(( T2 - T1 ))s, train $(( T3 - T2 ))s)"
