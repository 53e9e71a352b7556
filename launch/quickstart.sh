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

printf '\n== hsloth prep (train and eval shards)\n'
for split in train eval; do
  "$H" prep --input "$OUT/$split.jsonl" --tokenizer "$OUT/model" --out "$OUT/shards/$split" --loss response \
    --template chatml --overwrite
done
printf '\n== hsloth inspect\n'
"$H" inspect "$OUT/shards/train"

printf '\n== hsloth train (configs/demo.ini)\n'
rm -rf "$OUT/run"
"$H" train --config configs/demo.ini --model.path "$OUT/model" --data.train "$OUT/shards/train" \
  --data.eval "$OUT/shards/eval" --run.dir "$OUT/run"
printf '\n== eval before / after (from %s/run/metrics.jsonl)\n' "$OUT"
grep eval_loss "$OUT/run/metrics.jsonl"
echo "quickstart: done in $(( $(date +%s) - T0 ))s; outputs in $OUT"
