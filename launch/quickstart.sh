#!/usr/bin/env bash
# The README's first command: set up, build, and run the main job on the built-in demo.
#
#   bash launch/quickstart.sh [OUT_DIR]      (default: runs/demo)
#
# The demo: a synthetic instruction task with exact-match answers (launch/demo/make_demo.py) and a small
# byte-level BPE tokenizer trained on it; the data goes through `hsloth prep` into HDF5 shards and
# `hsloth inspect`. Training a tiny Llama-shaped model on it, with before/after eval loss and exact-match
# accuracy, joins this script with the training engine; each stage that is not built yet is named and skipped.
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
"$PY" launch/demo/make_demo.py "$OUT"

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
if ! implemented train; then
  echo "(hsloth train is not implemented yet: the demo stops before training)"
fi
echo "quickstart: done in $(( $(date +%s) - T0 ))s; outputs in $OUT"
