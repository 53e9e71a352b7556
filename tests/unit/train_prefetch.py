"""The background prefetch of micro-batches changes nothing a run computes or reports (issue #12).

A tiny random Llama (hf_models.py) and the demo task's shards, LoRA, 3 micro-batches per step
(train.grad_accum = 3) and a periodic eval on held-out train samples (eval reads the same shard files while a
prefetch of the next step's first batch may be pending). Each run is made twice: with prefetch (the default)
and with HS_SYNC_INPUTS=1 (every micro-batch read in the loop, in turn, as before prefetching existed):
1. the final adapters are byte-identical and metrics.jsonl holds the same losses, grad-norms and eval losses;
2. an unreadable sample at step 4 (HSLOTH_FAIL_AT=0:4:data; step 4's first batch is read in the background
   during step 3) is reported as step 4's, with the same message, and step 3 is saved, in both modes.
"""
import json
import os
import subprocess
import sys
import tempfile
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("HSLOTH_SOURCE", os.path.dirname(os.path.dirname(HERE)))
BIN = os.environ.get("HSLOTH_BIN", "")
sys.path.insert(0, os.path.join(SRC, "tests", "parity"))
import script_env  # noqa: E402
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def train(d, run, sync, fail=None):
    keys = {"model.path": f"{d}/model", "data.train": f"{d}/shards/train", "run.dir": f"{d}/{run}", "lora.r": 4,
            "lora.alpha": 8, "train.lr": 5e-3, "train.max_steps": 6, "train.tokens_per_batch": 300,
            "train.grad_accum": 3, "train.seed": 3, "log.every": 1, "data.eval_fraction": 0.2, "eval.every": 2}
    args = [BIN, "train"]
    for k, v in keys.items():
        args += [f"--{k}", str(v)]
    env = dict(os.environ)
    env.pop("HSLOTH_FAIL_AT", None)
    env.pop("HS_SYNC_INPUTS", None)
    if sync:
        env["HS_SYNC_INPUTS"] = "1"
    if fail:
        env["HSLOTH_FAIL_AT"] = fail
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)


def metrics(d, run):
    out = []
    with open(f"{d}/{run}/metrics.jsonl") as f:
        for line in f:
            j = json.loads(line)
            out.append({k: j[k] for k in ("step", "loss", "grad_norm", "eval_loss", "eval_tokens") if k in j})
    return out


def adapter(d, run):
    with open(f"{d}/{run}/final/adapter_model.safetensors", "rb") as f:
        return f.read()


def error_lines(r):
    return [x for x in r.stderr.splitlines() if "injected data error" in x or "saved step" in x]


def main():
    code = script_env.missing(BIN)
    if code is not None:
        return code
    import hf_models

    d = tempfile.mkdtemp(prefix="hs-train-prefetch-")
    try:
        hf_models.make_with_demo_data(d, {"model": {}})
        r = subprocess.run([BIN, "prep", "--input", f"{d}/demo/train.jsonl", "--tokenizer", f"{d}/model", "--out",
                            f"{d}/shards/train", "--loss", "response", "--template", "chatml"], capture_output=True,
                           text=True)
        if r.returncode != 0:
            print(r.stderr)
            return 1
        runs = {}
        for name, sync in (("prefetch", False), ("sync", True)):
            r = train(d, name, sync)
            check(r.returncode == 0, f"{name}: run ends with 0 ({r.returncode})"
                  + ("" if r.returncode == 0 else "\n" + r.stderr[-1500:]))
            runs[name] = r
        if not failures:
            a, b = metrics(d, "prefetch"), metrics(d, "sync")
            check(len(a) >= 6 + 3 and a == b, f"metrics.jsonl identical with and without prefetch ({len(a)} lines)")
            check(adapter(d, "prefetch") == adapter(d, "sync"), "final adapters byte-identical")
        errs = {}
        for name, sync in (("fail_prefetch", False), ("fail_sync", True)):
            r = train(d, name, sync, fail="0:4:data")
            errs[name] = error_lines(r)
            check(r.returncode == 1 and any("(in step 4)" in x for x in errs[name])
                  and os.path.exists(f"{d}/{name}/checkpoints/step-3/COMPLETE"),
                  f"{name}: data error reported in step 4, step 3 saved (exit {r.returncode}): {errs[name]}")
        same = [x.replace("fail_prefetch", "RUN") for x in errs["fail_prefetch"]] == \
            [x.replace("fail_sync", "RUN") for x in errs["fail_sync"]]
        check(same, "the same error text in both modes")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
