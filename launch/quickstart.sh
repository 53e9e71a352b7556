#!/usr/bin/env bash
# The README's first command: set up, build, and run the main job on the built-in demo.
#
#   bash launch/quickstart.sh [OUT_DIR]      (default: runs/demo)
#
# The demo: a synthetic instruction task with exact-match answers and a small byte-level BPE tokenizer
# trained on it, plus a tiny random Llama (launch/demo/make_demo.py --model); the data goes through
# `hsloth prep` into HDF5 shards and `hsloth inspect`, then `hsloth train` (configs/demo.ini, full
# fine-tuning from scratch on CPU, or the GPU when there is one) prints eval loss and exact-match accuracy
# before and after. Outputs: OUT_DIR/run (metrics.jsonl, TensorBoard, checkpoints, config.resolved.ini).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${1:-runs/demo}
T0=$(date +%s)
bash launch/setup.sh
PY=.venv/bin/python
H=${HS_BUILD_DIR:-build}/hsloth
"$PY" -c 'import tokenizers' 2>/dev/null || "$PY" -m pip install -q --disable-pip-version-check "tokenizers==0.23.3"

printf '\n== hsloth info\n'
"$H" info

printf '\n== demo data and tokenizer -> %s\n' "$OUT"
"$PY" launch/demo/make_demo.py "$OUT" --model

implemented() { "$H" --help | grep -E "^  $1 " | grep -qv "not implemented yet"; }
if implemented prep; then
  printf '\n== hsloth prep (train and eval shards)\n'
  "$H" prep --input "$OUT/train.jsonl" --tokenizer "$OUT/model" --out "$OUT/shards/train" --loss response --template chatml --overwrite
  "$H" prep --input "$OUT/eval.jsonl" --tokenizer "$OUT/model" --out "$OUT/shards/eval" --loss response --template chatml --overwrite
  if implemented inspect; then
    printf '\n== hsloth inspect\n'
    "$H" inspect "$OUT/shards/train"
  fi
else
  echo "(hsloth prep is not implemented yet: stopping after the demo data)"
fi
if implemented train; then
  printf '\n== hsloth train (configs/demo.ini)\n'
  rm -rf "$OUT/run"
  "$H" train --config configs/demo.ini --model.path "$OUT/model" --data.train "$OUT/shards/train" \
    --data.eval "$OUT/shards/eval" --run.dir "$OUT/run"
  printf '\n== eval before / after (from %s/run/metrics.jsonl)\n' "$OUT"
  grep eval_loss "$OUT/run/metrics.jsonl"
fi
echo "quickstart: done in $(( $(date +%s) - T0 ))s; outputs in $OUT"
