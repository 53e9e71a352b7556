#!/usr/bin/env python3
"""Bucketed all-reduce and ZeRO-1 on CPU over MPI give the bits of one all-reduce after backward.

1. Buckets: at -np 1, 2 and 4 a LoRA run with dist.bucket_mb = 0 (one all-reduce of the whole gradient after
   backward: the path every earlier release took) and one with buckets so small that every trainable tensor
   is a bucket of its own (the log says how many) end with byte-identical adapters and the same loss, grad-norm
   and eval loss at every step (==, not a tolerance). The same for full fine-tuning at -np 2 and 4, once with
   the fp64 gradient sum (train.grad_sum = fp64: the fp64 sum is what the buckets reduce) and once in fp32.
   The runs use grad_accum 2, so the earlier micro-batch of a step accumulates without buckets.
2. ZeRO-1 (dist.shard_optimizer = on, full fine-tuning): at -np 1, 2 and 4 the final model is byte-identical
   to the unsharded run of the same world size, with the same per-step numbers; a sharded -np 2 run that
   dies at step 5 after checkpointing at step 3 resumes under -np 4 (sharded) and under -np 1 (unsharded) and
   both end with the uninterrupted runs' model (the checkpoint holds the whole state: world size free).

usage: dist_equiv.py MPIEXEC        (exit 77 = skipped: oracle packages missing)
"""
import json
import re
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("HSLOTH_SOURCE", os.path.dirname(os.path.dirname(HERE)))
BIN = os.environ.get("HSLOTH_BIN", "")
MPIEXEC = sys.argv[1] if len(sys.argv) > 1 else "mpiexec"
sys.path.insert(0, os.path.join(SRC, "tests", "parity"))
import script_env  # noqa: E402

failures = []
STEPS = 6
TINY_MB = 0.0001  # ~100 bytes: one bucket per trainable tensor
MID_MB = {"lora": 0.004, "full": 0.05}  # a few tensors per bucket


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def train(d, run_dir, np, accum, env=None, **over):
    keys = {"model.path": f"{d}/model", "data.train": f"{d}/shards/train", "data.eval": f"{d}/shards/eval",
            "run.dir": f"{d}/{run_dir}", "lora.r": 4, "lora.alpha": 8, "lora.dropout": 0, "train.lr": 5e-3,
            "train.schedule": "linear", "train.warmup_steps": 1, "train.max_steps": STEPS,
            "train.tokens_per_batch": 300, "train.grad_accum": accum, "train.max_grad_norm": 0.5,
            "train.weight_decay": 0.01, "train.seed": 5, "log.every": 1, "eval.every": 3,
            "dist.check_every": 2}
    keys.update(over)
    args = [BIN, "train"]
    for k, v in keys.items():
        args += [f"--{k}", str(v)]
    cmd = [MPIEXEC, "-n", str(np), *args] if np > 1 else args
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    return r, r.stdout + r.stderr


def numbers(d, run_dir):
    """Per-step loss, grad-norm, eval loss: the fields that carry the run's arithmetic (no timings)."""
    out = []
    with open(f"{d}/{run_dir}/metrics.jsonl") as f:
        for line in f:
            if line.strip():
                m = json.loads(line)
                out.append({k: m[k] for k in ("step", "loss", "grad_norm", "eval_loss") if k in m})
    return out


def final_bytes(d, run_dir):
    path = f"{d}/{run_dir}/final"
    name = "adapter_model.safetensors" if os.path.exists(f"{path}/adapter_model.safetensors") else "model.safetensors"
    with open(f"{path}/{name}", "rb") as f:
        return f.read()


def weights_diff(path_a, path_b):
    from safetensors.torch import load_file
    a, b = load_file(path_a), load_file(path_b)
    if sorted(a) != sorted(b):
        return float("inf")
    return max(((a[k].double() - b[k].double()).norm() / b[k].double().norm().clamp_min(1e-30)).item() for k in a)


def ok_run(r, log, what):
    if r.returncode != 0:
        print(log[-4000:])
    check(r.returncode == 0, f"{what}: exit {r.returncode}")
    return r.returncode == 0


def same(d, a, b, what):
    na, nb = numbers(d, a), numbers(d, b)
    check(len(na) > STEPS and na == nb, f"{what}: per-step loss/grad-norm/eval loss identical ({len(na)} records)")
    check(final_bytes(d, a) == final_bytes(d, b), f"{what}: final weights byte-identical")


def main():
    code = script_env.missing(BIN, extra=("safetensors",))
    if code is not None:
        return code
    import hf_models

    d = tempfile.mkdtemp(prefix="hs-dist-")
    try:
        subprocess.run([sys.executable, f"{SRC}/launch/demo/make_demo.py", f"{d}/demo", "--train", "96",
                        "--eval", "8", "--vocab", "512"], check=True, capture_output=True)
        hf_models.make("tinyllama", f"{d}/model", seed=1, vocab_size=512)
        for f in ["tokenizer.json", "tokenizer_config.json"]:
            shutil.copy(f"{d}/demo/model/{f}", f"{d}/model/{f}")
        for split in ["train", "eval"]:
            r = subprocess.run([BIN, "prep", "--input", f"{d}/demo/{split}.jsonl", "--tokenizer", f"{d}/model",
                                "--out", f"{d}/shards/{split}", "--loss", "response", "--template", "chatml"],
                               capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stdout, r.stderr)
                return 1

        # 1. buckets
        cases = [("lora", np, {}) for np in (1, 2, 4)]
        cases += [("full", np, {"train.grad_sum": gs}) for np in (2, 4) for gs in ("fp64", "fp32")]
        for ft, np, extra in cases:
            tag = f"{ft}-np{np}-" + "-".join(str(v) for v in extra.values())
            over = {"finetune": ft, **extra}
            if ft == "full":
                over["train.lr"] = 1e-3
            r0, log0 = train(d, f"{tag}-one", np, 2, **over, **{"dist.bucket_mb": 0})
            r1, log1 = train(d, f"{tag}-buckets", np, 2, **over, **{"dist.bucket_mb": TINY_MB})
            if not (ok_run(r0, log0, f"{tag} bucket_mb 0") and ok_run(r1, log1, f"{tag} bucket_mb {TINY_MB}")):
                continue
            n = 0
            if np > 1:
                m = re.search(r"gradient all-reduce: (\d+) bucket", log1)
                n = int(m.group(1)) if m else 0
                check(n >= 8, f"{tag}: {n} buckets (one per trainable tensor)")
                check("gradient all-reduce" not in log0, f"{tag}: bucket_mb 0 runs one all-reduce")
            same(d, f"{tag}-one", f"{tag}-buckets", f"{tag}: buckets vs one all-reduce")
            if np == 4 and extra.get("train.grad_sum") != "fp64":
                # Buckets of several tensors: a bucket reduced before its last tensor's gradient would show.
                r2, log2 = train(d, f"{tag}-mid", np, 2, **over, **{"dist.bucket_mb": MID_MB[ft]})
                if ok_run(r2, log2, f"{tag} bucket_mb {MID_MB[ft]}"):
                    m = re.search(r"gradient all-reduce: (\d+) bucket", log2)
                    k = int(m.group(1)) if m else 0
                    check(1 < k < n, f"{tag}: bucket_mb {MID_MB[ft]} makes {k} buckets of several tensors")
                    same(d, f"{tag}-one", f"{tag}-mid", f"{tag}: {k} buckets vs one all-reduce")

        # 2. ZeRO-1: the same global batch (4 micro-batches) at every world size
        full = {"finetune": "full", "train.lr": 1e-3}
        for np, gs in [(1, "auto"), (2, "auto"), (4, "auto"), (4, "fp32")]:
            tag = f"zero-np{np}-{gs}"
            over = {**full, "train.grad_sum": gs, "train.grad_accum": 4 // np}
            r0, log0 = train(d, f"{tag}-off", np, 4 // np, **over)
            r1, log1 = train(d, f"{tag}-on", np, 4 // np, **over, **{"dist.shard_optimizer": "on"})
            if not (ok_run(r0, log0, f"{tag} unsharded") and ok_run(r1, log1, f"{tag} sharded")):
                continue
            if np > 1:
                check(f"ZeRO-1: fp32 master and AdamW moments sharded over {np} ranks" in log1, f"{tag}: sharded")
            same(d, f"{tag}-off", f"{tag}-on", f"{tag}: ZeRO-1 vs unsharded")
            clipped = sum(1 for m in numbers(d, f"{tag}-on") if m.get("grad_norm", 0) > 0.5)
            check(clipped > 0, f"{tag}: {clipped} step(s) clipped by the global norm (max_grad_norm 0.5)")

        # A sharded -np 2 run dies at step 5 (checkpoint at step 3); it resumes sharded under -np 4 and unsharded
        # under -np 1, and each ends with the uninterrupted run of that world size (other world sizes add in
        # another order: within 1e-5).
        env = dict(os.environ, HSLOTH_FAIL_AT="1:5")
        over = {**full, "dist.shard_optimizer": "on", "ckpt.every": 3}
        r, log = train(d, "zc", 2, 2, env=env, **over)
        check(r.returncode != 0 and os.path.isdir(f"{d}/zc/checkpoints/step-3"),
              f"sharded -np 2 run died at step 5 with checkpoint step-3 (exit {r.returncode})")
        shutil.copytree(f"{d}/zc", f"{d}/zc1")
        for np, run_dir, shard, ref in [(4, "zc", "on", "zero-np4-auto-on"), (1, "zc1", "off", "zero-np1-auto-off")]:
            r, log = train(d, run_dir, np, 4 // np, **{**over, "dist.shard_optimizer": shard, "train.resume": "auto"})
            if ok_run(r, log, f"resume the sharded 2-rank checkpoint under -np {np} (shard {shard})"):
                check("step-3" in log and f"2-rank checkpoint on {np} ranks" in log, f"-np {np} resumed step-3")
                dw = weights_diff(f"{d}/{run_dir}/final/model.safetensors", f"{d}/{ref}/final/model.safetensors")
                check(dw <= 1e-5, f"-np {np} after resume: final weights within {dw:.1e} of the uninterrupted run")

        # ZeRO-1 is for full fine-tuning: LoRA with it is an error that says what to do
        r, log = train(d, "zl", 2, 2, **{"dist.shard_optimizer": "on"})
        check(r.returncode != 0 and "dist.shard_optimizer = off" in log, "LoRA with dist.shard_optimizer: an error")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print(f"{len(failures)} failure(s)" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
