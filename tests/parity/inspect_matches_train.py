#!/usr/bin/env python3
"""`hsloth inspect --world N --grad-accum G` prints the batching that `hsloth train` runs and logs.

On the shared data (sharegpt_500 and alpaca_tiny, prepped with the qwen2.5 tokenizer) a short CPU training
of a tiny random model (hf_models.py, vocabulary of the tokenizer) is run twice:
  sharegpt_500: mpirun -np 2, grad_accum 2, packed;   alpaca_tiny: -np 1, grad_accum 3, padded.
Then `hsloth inspect --json --steps` with the same --world/--grad-accum/--tokens-per-batch/--seed/--packing
must report exactly what the trainer wrote:
  * per optimizer step: tokens, trained tokens and the rank imbalance of metrics.jsonl (log.every 1);
  * the plan: micro-batches, padding and steps per epoch of the trainer's "data:" log line, the steps per
    epoch also as metrics.jsonl's epoch = step / steps_per_epoch;
  * inspect's batching table: the packed (packed run) or padded (padded run) row has the
    trainer's micro-batches, and the padded row's waste is the trainer's padding.
The trainer is the oracle here, inspect the code under test: they share only BatchPlan, so a second
packing or imbalance formula in either one shows up as a mismatch.

usage: inspect_matches_train.py MPIEXEC     (exit 77 = skipped: oracle packages or shared data missing)
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("HSLOTH_BIN", "")
DATA = os.environ.get("HSLOTH_TESTDATA", "")
MPIEXEC = sys.argv[1] if len(sys.argv) > 1 else "mpiexec"
sys.path.insert(0, HERE)
STEPS = 4
TPB = 512
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def run(cmd, timeout=600):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def case(d, ds, np, accum, packing, seed):
    shards = f"{d}/{ds}"
    r = run([BIN, "prep", "--input", f"{DATA}/datasets/{ds}.json", "--tokenizer", f"{DATA}/tokenizers/qwen2.5",
             "--out", shards, "--template", "chatml", "--loss", "response", "--max-len", str(TPB)])
    if r.returncode != 0:
        check(False, f"prep {ds}: exit {r.returncode}\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
        return
    keys = {"model.path": f"{d}/model", "data.train": shards, "run.dir": f"{d}/run-{ds}", "lora.r": 4,
            "lora.alpha": 8, "train.lr": 1e-3, "train.warmup_steps": 1, "train.max_steps": STEPS,
            "train.tokens_per_batch": TPB, "train.grad_accum": accum, "train.packing": packing,
            "train.seed": seed, "log.every": 1}
    args = [BIN, "train"] + [a for k, v in keys.items() for a in (f"--{k}", str(v))]
    r = run([MPIEXEC, "-n", str(np), *args] if np > 1 else args)
    log = r.stdout + r.stderr
    if r.returncode != 0:
        check(False, f"{ds}: train -np {np} exits 0 (got {r.returncode})\n{log[-3000:]}")
        return
    with open(f"{d}/run-{ds}/metrics.jsonl") as f:
        steps = [json.loads(line) for line in f if line.strip()]
    steps = [m for m in steps if "loss" in m]
    m = re.search(r"(\d+) micro-batches \((\w+), padding ([-+.e\d]+)%\), (\d+) steps/epoch", log)
    check(m is not None and len(steps) == STEPS, f"{ds}: trainer logged its plan and {len(steps)} steps")
    if m is None or len(steps) != STEPS:
        print(log[-3000:])
        return
    t_micro, t_padding, t_spe = int(m.group(1)), float(m.group(3)), int(m.group(4))

    r = run([BIN, "inspect", shards, "--world", str(np), "--grad-accum", str(accum), "--tokens-per-batch",
             str(TPB), "--seed", str(seed), "--packing", packing, "--json", "--steps"])
    if r.returncode != 0:
        check(False, f"{ds}: inspect exits 0 (got {r.returncode}): {r.stderr[-2000:]}")
        return
    j = json.loads(r.stdout)
    plan = j["plan"]
    what = f"{ds} (-np {np}, grad_accum {accum}, {packing})"
    check(plan["micro_batches"] == t_micro and plan["steps_per_epoch"] == t_spe,
          f"{what}: inspect plans {plan['micro_batches']} micro-batches, {plan['steps_per_epoch']} steps/epoch; "
          f"the trainer {t_micro}, {t_spe}")
    check(all(abs(s["epoch"] * t_spe - s["step"]) < 1e-9 for s in steps),
          f"{what}: metrics.jsonl's epoch = step / {t_spe}")
    check(round(plan["padding"] * 1000) / 10 == t_padding,
          f"{what}: inspect's plan padding {100 * plan['padding']:.2f}% = the trainer's {t_padding}%")
    table = j[packing]
    check(table["batches"] == t_micro,
          f"{what}: inspect's {packing} batching row has {table['batches']} batches = the trainer's micro-batches")
    if packing == "padded":
        check(round(table["waste"] * 1000) / 10 == t_padding,
              f"{what}: the padded (hsloth train) waste {100 * table['waste']:.2f}% = the trainer's padding")
    per_step = plan["steps"]
    check(len(per_step) == t_spe and sum(s["micro_batches"] for s in per_step) == t_micro and
          all(s["micro_batches"] <= np * accum for s in per_step),
          f"{what}: inspect's {len(per_step)} steps hold the {t_micro} micro-batches, <= {np * accum} each")
    for got, want in zip(per_step, steps):
        same = (got["step"] == want["step"] and got["tokens"] == want["tokens"] and
                got["trained_tokens"] == want["trained_tokens"] and got["imbalance"] == want["imbalance"])
        check(same, f"{what}: step {want['step']}: inspect tokens {got['tokens']}, trained {got['trained_tokens']}, "
                    f"imbalance {got['imbalance']:.6f}; trainer {want['tokens']}, {want['trained_tokens']}, "
                    f"{want['imbalance']:.6f}")
    if np > 1:
        check(any(s["imbalance"] != 1.0 for s in steps[:STEPS]) or t_micro >= STEPS * np * accum,
              f"{what}: the compared imbalances are not all trivially 1")
    text = run([BIN, "inspect", shards, "--world", str(np), "--grad-accum", str(accum), "--tokens-per-batch",
                str(TPB), "--seed", str(seed), "--packing", packing, "--steps"])
    row = re.search(rf"^\s+1\s+{per_step[0]['micro_batches']}\s+{steps[0]['tokens']}\s+{steps[0]['trained_tokens']}\s+"
                    rf"{steps[0]['imbalance']:.4f}\s*$", text.stdout, re.M)
    check(text.returncode == 0 and f"{t_micro} micro-batches" in text.stdout and row is not None,
          f"{what}: the text output lists the same plan and step 1")


def main():
    if not BIN or not os.path.exists(BIN):
        print(f"FAIL: hsloth binary not found ($HSLOTH_BIN={BIN!r})")
        return 1
    if not DATA or not os.path.isdir(os.path.join(DATA, "datasets")):
        print("SKIP: shared data not found ($HSLOTH_TESTDATA)")
        return 77
    try:
        import tokenizers
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        print(f"SKIP: oracle packages missing ({e})")
        return 77
    import hf_models

    d = tempfile.mkdtemp(prefix="hs-inspect-train-")
    try:
        tok = f"{DATA}/tokenizers/qwen2.5"
        vocab = tokenizers.Tokenizer.from_file(f"{tok}/tokenizer.json").get_vocab_size(with_added_tokens=True)
        hf_models.make("llama3_tied", f"{d}/model", seed=1, vocab_size=vocab, hidden_size=32, intermediate_size=48,
                       num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=TPB)
        for f in ["tokenizer.json", "tokenizer_config.json"]:
            shutil.copy(f"{tok}/{f}", f"{d}/model/{f}")
        case(d, "sharegpt_500", np=2, accum=2, packing="packed", seed=7)
        case(d, "alpaca_tiny", np=1, accum=3, packing="padded", seed=11)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print(f"{len(failures)} failure(s)" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
