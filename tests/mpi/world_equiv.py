#!/usr/bin/env python3
"""Data parallel on CPU over MPI: world sizes agree, a failing rank ends the job, plans balance.

1. The same global batch (4 micro-batches per optimizer step) as `-np 1` with grad_accum 4, `-np 2` with
   grad_accum 2 and `-np 4` with grad_accum 1 (LoRA, fp32, no dropout) gives the same loss at every step,
   the same eval loss and the same final adapter within 1e-6 relative. The reference for "the same" is
   the -np 1 run, which involves no communication at all. Parameter checksums run every 2 steps.
2. A rank that throws (HSLOTH_FAIL_AT=1:STEP) ends the whole `mpirun -np 2` job with a non-zero exit within
   30 s, and the job's output carries that rank's message.
3. Checkpoints are portable across world sizes: a -np 2 run that dies at step 8 after checkpointing at
   step 6 resumes under -np 1 (grad_accum 4) and ends with the uninterrupted -np 1 run's adapter (1e-6).
4. Per-step rank imbalance (largest rank's tokens / mean) logged by the -np 2/4 runs stays under 5%, and
   `hsloth inspect --world N` on the shared sharegpt_500 and alpaca_tiny shards predicts under 5% too.

usage: world_equiv.py MPIEXEC        (exit 77 = skipped: oracle packages missing)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("HSLOTH_SOURCE", os.path.dirname(os.path.dirname(HERE)))
BIN = os.environ.get("HSLOTH_BIN", "")
DATA = os.environ.get("HSLOTH_TESTDATA", "")
MPIEXEC = sys.argv[1] if len(sys.argv) > 1 else "mpiexec"
sys.path.insert(0, os.path.join(SRC, "tests", "parity"))
import script_env  # noqa: E402
failures = []
STEPS = 10


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def run(cmd, timeout=600, env=None):
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return r, time.time() - t0


def train_cmd(d, run_dir, np, accum, **over):
    keys = {"model.path": f"{d}/model", "data.train": f"{d}/shards/train", "data.eval": f"{d}/shards/eval",
            "run.dir": f"{d}/{run_dir}", "lora.r": 4, "lora.alpha": 8, "lora.dropout": 0, "train.lr": 5e-3,
            "train.schedule": "linear", "train.warmup_steps": 2, "train.max_steps": STEPS,
            "train.tokens_per_batch": 400, "train.grad_accum": accum, "train.max_grad_norm": 1.0,
            "train.weight_decay": 0.01, "train.seed": 3, "log.every": 1, "eval.every": 5, "dist.check_every": 2}
    keys.update(over)
    args = [BIN, "train"]
    for k, v in keys.items():
        args += [f"--{k}", str(v)]
    return [MPIEXEC, "-n", str(np), *args] if np > 1 else args


def metrics(d, run_dir):
    with open(f"{d}/{run_dir}/metrics.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def rel_diff(a, b):
    return abs(a - b) / max(abs(b), 1e-30)


def adapter_diff(path_a, path_b):
    from safetensors.torch import load_file
    a, b = load_file(path_a), load_file(path_b)
    if sorted(a) != sorted(b):
        return float("inf")
    return max(((a[k].double() - b[k].double()).norm() / b[k].double().norm().clamp_min(1e-30)).item() for k in a)


def main():
    code = script_env.missing(BIN, extra=("safetensors",))
    if code is not None:
        return code
    import hf_models

    d = tempfile.mkdtemp(prefix="hs-world-")
    try:
        subprocess.run([sys.executable, f"{SRC}/launch/demo/make_demo.py", f"{d}/demo", "--train", "160",
                        "--eval", "16", "--vocab", "512"], check=True, capture_output=True)
        hf_models.make("tinyllama", f"{d}/model", seed=1, vocab_size=512)
        for f in ["tokenizer.json", "tokenizer_config.json"]:
            shutil.copy(f"{d}/demo/model/{f}", f"{d}/model/{f}")
        for split in ["train", "eval"]:
            r, _ = run([BIN, "prep", "--input", f"{d}/demo/{split}.jsonl", "--tokenizer", f"{d}/model", "--out",
                        f"{d}/shards/{split}", "--loss", "response", "--template", "chatml"])
            if r.returncode != 0:
                print(r.stdout, r.stderr)
                return 1

        # 1. world sizes 1, 2, 4 with the same global batch
        runs = {}
        for np, accum in [(1, 4), (2, 2), (4, 1)]:
            r, secs = run(train_cmd(d, f"w{np}", np, accum))
            if r.returncode != 0:
                print(r.stdout[-3000:], r.stderr[-3000:])
                check(False, f"-np {np} run exits 0 (got {r.returncode})")
                return 1
            log = r.stdout + r.stderr
            want = "local (world size 1)" if np == 1 else f"MPI ({np} ranks, CPU tensors)"
            check(want in log, f"-np {np}: communicator '{want}' ({secs:.1f}s)")
            runs[np] = metrics(d, f"w{np}")
        ref = [m for m in runs[1] if "loss" in m]
        ref_eval = [m["eval_loss"] for m in runs[1] if "eval_loss" in m]
        check(len(ref) == STEPS and ref[-1]["loss"] < ref[0]["loss"],
              f"-np 1 trains: loss {ref[0]['loss']:.4f} -> {ref[-1]['loss']:.4f} over {len(ref)} steps")
        for np in (2, 4):
            steps = [m for m in runs[np] if "loss" in m]
            ev = [m["eval_loss"] for m in runs[np] if "eval_loss" in m]
            dl = max(rel_diff(a["loss"], b["loss"]) for a, b in zip(steps, ref))
            dg = max(rel_diff(a["grad_norm"], b["grad_norm"]) for a, b in zip(steps, ref))
            same_tokens = all(a["tokens"] == b["tokens"] and a["trained_tokens"] == b["trained_tokens"]
                              for a, b in zip(steps, ref))
            check(len(steps) == STEPS and same_tokens, f"-np {np}: {len(steps)} steps with -np 1's tokens per step")
            check(dl <= 1e-6, f"-np {np} vs -np 1: per-step loss within {dl:.1e} relative (bound 1e-6)")
            check(dg <= 1e-5, f"-np {np} vs -np 1: per-step grad-norm within {dg:.1e} relative")
            de = max(rel_diff(a, b) for a, b in zip(ev, ref_eval)) if len(ev) == len(ref_eval) else 1
            check(len(ev) == 3 and de <= 1e-6, f"-np {np} vs -np 1: eval loss within {de:.1e} ({len(ev)} evals)")
            da = adapter_diff(f"{d}/w{np}/final/adapter_model.safetensors", f"{d}/w1/final/adapter_model.safetensors")
            check(da <= 1e-6, f"-np {np} vs -np 1: final adapter within {da:.1e} relative (bound 1e-6)")
            imb = [m["imbalance"] for m in steps]
            mean_imb = sum(imb) / len(imb)
            check(mean_imb < 1.05, f"-np {np}: mean per-step rank imbalance {mean_imb:.4f} (max {max(imb):.4f})")

        # 2. a failing rank ends the job promptly, with its message
        env = dict(os.environ, HSLOTH_FAIL_AT="1:2")
        r, secs = run(train_cmd(d, "fail", 2, 2), timeout=120, env=env)
        log = r.stdout + r.stderr
        check(r.returncode != 0, f"-np 2 with rank 1 failing at step 2: exit code {r.returncode}")
        check(secs < 30, f"job ended in {secs:.1f}s (bound 30s)")
        check("[rank 1]" in log and "injected failure at step 2" in log,
              "output names rank 1 and its error")

        # 3. checkpoints move across world sizes: -np 2 dies at step 8 (checkpoints at 3, 6), -np 1 resumes
        env = dict(os.environ, HSLOTH_FAIL_AT="1:8")
        r, _ = run(train_cmd(d, "cross", 2, 2, **{"ckpt.every": 3}), timeout=300, env=env)
        check(r.returncode != 0 and os.path.isdir(f"{d}/cross/checkpoints/step-6"),
              "-np 2 run died at step 8 with checkpoint step-6 on disk")
        r, _ = run(train_cmd(d, "cross", 1, 4, **{"ckpt.every": 3, "train.resume": "auto"}))
        log = r.stdout + r.stderr
        check(r.returncode == 0 and "step-6" in log and "2-rank checkpoint on 1 ranks" in log,
              f"-np 1 resumed the 2-rank checkpoint step-6 (exit {r.returncode})")
        da = adapter_diff(f"{d}/cross/final/adapter_model.safetensors", f"{d}/w1/final/adapter_model.safetensors")
        check(da <= 1e-6, f"resumed at another world size: final adapter within {da:.1e} of -np 1's")

        # 4. plans of the shared datasets balance across ranks
        if DATA and os.path.isdir(os.path.join(DATA, "datasets")):
            for ds in ["sharegpt_500", "alpaca_tiny"]:
                out = f"{d}/shared/{ds}"
                r, _ = run([BIN, "prep", "--input", f"{DATA}/datasets/{ds}.json", "--tokenizer",
                            f"{DATA}/tokenizers/qwen2.5", "--out", out, "--template", "chatml", "--loss", "response"])
                if r.returncode != 0:
                    print(r.stdout, r.stderr)
                    check(False, f"prep {ds}")
                    continue
                worst = []
                for world in (2, 4, 8):
                    for tpb in (2048, 4096, 8192):
                        r, _ = run([BIN, "inspect", out, "--world", str(world), "--tokens-per-batch", str(tpb),
                                    "--json"])
                        plan = json.loads(r.stdout)["plan"]
                        worst.append((plan["imbalance_mean"], world, tpb))
                m = max(worst)
                check(m[0] < 1.05, f"{ds}: planned mean imbalance <= {m[0]:.4f} over world 2/4/8 x "
                                   f"tokens_per_batch 2048/4096/8192 (worst at world {m[1]}, {m[2]})")
        else:
            print("note: shared data not found; skipping the shared-dataset plan check")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print(f"{len(failures)} failure(s)" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
