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
# Environment: HSLOTH (the binary; default build/hsloth), HS_SKIP_SETUP=1 (skip launch/setup.sh, e.g. with
# HSLOTH pointing at a binary built elsewhere), HS_PYTHON (default .venv/bin/python), HS_NP (ranks; default:
# the number of GPUs that `nvidia-smi -L` lists, else 2; without mpirun: 1 process, with grad_accum 2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${1:-runs/demo}
T0=$(date +%s)
[ "${HS_SKIP_SETUP:-0}" = 1 ] || bash launch/setup.sh
PY=${HS_PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3  # with HS_SKIP_SETUP=1 on a machine set up otherwise
H=${HSLOTH:-${HS_BUILD_DIR:-build}/hsloth}
"$PY" -c 'import tokenizers' 2>/dev/null || "$PY" -m pip install -q --disable-pip-version-check "tokenizers==0.23.3"

# Ranks: one per GPU (each rank picks its own), else 2 on the CPU (MPI all-reduce; each rank gets half the
# cores). One process (without mpirun, or HS_NP=1) accumulates 2 micro-batches per step instead, so that
# the CPU run takes the same steps either way.
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
NP=${HS_NP:-$([ "${GPUS:-0}" -gt 0 ] && echo "$GPUS" || echo 2)}
LAUNCH=()
if [ "$NP" -gt 1 ] && ! command -v mpirun >/dev/null; then
  echo "quickstart: mpirun not found, so training runs in one process instead of $NP ranks" \
    "(launch/setup.sh installs Open MPI: apt-get install openmpi-bin libopenmpi-dev)"
  NP=1
fi
if [ "$NP" -gt 1 ]; then
  LAUNCH=(mpirun -np "$NP")
  if mpirun --version 2>/dev/null | grep -q "Open MPI"; then
    [ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    # --oversubscribe: Open MPI counts physical cores as slots, which can be fewer than the ranks.
    LAUNCH+=(--bind-to none --oversubscribe)
  fi
fi
EXTRA=()
[ "$NP" -eq 1 ] && EXTRA=(--train.grad_accum 2)
T1=$(date +%s)

printf '\n== hsloth info\n'
"$H" info
T2=$(date +%s)

printf '\n== demo data, tokenizer and model -> %s\n' "$OUT"
"$PY" launch/demo/make_demo.py "$OUT" --model
printf 'for example: %s\n' "$(head -1 "$OUT/eval.jsonl")"
T3=$(date +%s)

printf '\n== hsloth prep (train and eval shards)\n'
for split in train eval; do
  "$H" prep --input "$OUT/$split.jsonl" --tokenizer "$OUT/model" --out "$OUT/shards/$split" --loss response \
    --template chatml --overwrite
done
T4=$(date +%s)
printf '\n== hsloth inspect\n'
# Batch padding/packing and, for the planned ranks, the per-step balance (as configs/demo.ini will batch).
PLAN=(--tokens-per-batch "$(sed -n 's/^tokens_per_batch *= *//p' configs/demo.ini)")
"$H" inspect --help 2>&1 | grep -q -- '--world' && PLAN+=(--world "$NP" --grad-accum "$([ "$NP" -eq 1 ] && echo 2 || echo 1)")
"$H" inspect "$OUT/shards/train" "${PLAN[@]}"
T5=$(date +%s)

printf '\n== %shsloth train (configs/demo.ini, %s rank%s)\n' "${LAUNCH[*]:+${LAUNCH[*]} }" "$NP" "$([ "$NP" -gt 1 ] && echo s)"
rm -rf "$OUT/run"
"${LAUNCH[@]}" "$H" train --config configs/demo.ini --model.path "$OUT/model" --data.train "$OUT/shards/train" \
  --data.eval "$OUT/shards/eval" --run.dir "$OUT/run" "${EXTRA[@]}" < /dev/null
T6=$(date +%s)

printf '\n== summary (from %s/run/metrics.jsonl)\n' "$OUT"
"$PY" - "$OUT/run/metrics.jsonl" "$OUT/eval.jsonl" "$H" "$OUT/model" "$OUT/run/final" <<'PYEOF'
import json, subprocess, sys
metrics, evals, hsloth, before, after = sys.argv[1:6]
rows = [json.loads(x) for x in open(metrics) if x.strip()]
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
    tps = sum(r["tokens_per_s"] for r in steps) / len(steps)
    print(f"  {steps[-1]['step']} steps in {steps[-1]['elapsed_s']:.1f}s, {tps:,.0f} tokens/s (all ranks)")
# A few held-out prompts, answered greedily by the random start model and by the trained one (hsloth generate).
def answer(model, m):
    prompt = "".join(f"<|im_start|>{x['role']}\n{x['content']}<|im_end|>\n" for x in m[:-1]) + "<|im_start|>assistant\n"
    out = subprocess.run([hsloth, "generate", "--model", model, "--prompt", prompt, "--greedy", "--max-new", "8"],
                         capture_output=True, text=True)
    text = out.stdout[:-1] if out.stdout.endswith("\n") else out.stdout  # generate ends with a newline
    if out.returncode != 0:
        problems.append(f"hsloth generate failed: {out.stderr.strip()}")
        return "(hsloth generate failed)"
    return repr(text)
problems = []
print("  held-out examples (greedy): prompt -> before | after (expected)")
for line in open(evals).readlines()[:3]:
    m = json.loads(line)["messages"]
    print(f"    {m[1]['content']!r} -> {answer(before, m)} | {answer(after, m)} ({m[-1]['content']!r})")
# The demo's promise (README): the held-out exact-match ends at 100% (>= 99% on every seed tried); below 90%
# something is broken, and the main command says so with a non-zero exit.
if not ev or ev[-1].get("exact_match", 0) < 0.9:
    problems.append("the trained model's held-out exact-match is below 90%: the demo did not learn the task")
for p in problems:
    print(f"quickstart: FAILED: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
PYEOF
echo "  outputs: $OUT/run/"
echo "    metrics.jsonl  (loss, lr, tokens/s every log.every steps; eval loss and exact_match)"
echo "    tensorboard/   (tensorboard --logdir $OUT/run/tensorboard)"
echo "    final/         (the trained model as an HF folder: hsloth generate or transformers load it)"
echo "    checkpoints/, config.resolved.ini; data: $OUT/{train,eval}.jsonl, shards/, model/ (the random start)"
echo "quickstart: done in $(( $(date +%s) - T0 ))s: setup $(( T1 - T0 ))s, info $(( T2 - T1 ))s," \
  "data $(( T3 - T2 ))s, prep $(( T4 - T3 ))s, inspect $(( T5 - T4 ))s, train $(( T6 - T5 ))s," \
  "summary $(( $(date +%s) - T6 ))s"
