"""Multi-GPU data parallel (NCCL) on one node: scaling, equivalence with one GPU, failure handling.

Model: a random Llama-3.2-1B-shaped model in bf16 (model_gpu.make), LoRA r=16 on all 7 projections.
Data: ShareGPT ×4 + Alpaca (../shared/data/datasets/{sharegpt_500,alpaca_tiny}.json, ChatML, response-only loss, truncated to 4096).

1. Scaling: -np 1, 2, 4 (as many as there are GPUs) with the same per-GPU batch (tokens_per_batch T,
   grad_accum 1): tokens/s per GPU after warm-up, and efficiency = tokens/s(N) / (N x tokens/s(1)).
2. Equivalence: -np N against -np 1 with grad_accum N (the same global batch, the same steps): per-step
   loss within 2% relative (bf16, as the issue's GPU bound for HF parity), and the run's own parameter
   checksum (dist.check_every) proves the ranks stayed identical.
3. Failure: with rank 1 throwing at step 3 (HSLOTH_FAIL_AT) the job ends non-zero within 30 s.
4. Out of memory: a micro-batch far too large for the GPU ends the run with exit 1 and a message naming the
   settings to lower (train.tokens_per_batch, train.grad_ckpt).
usage: dist_gpu.py HSLOTH_BIN [--failure-only]   (writes $OUT/dist_gpu.json when $OUT is set; exit 77 with fewer than 2 GPUs)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

try:
    import torch
except ImportError as e:
    print(f"skipping: {e}")
    sys.exit(77)
if torch.cuda.device_count() < 2:
    print(f"skipping: {torch.cuda.device_count()} GPU(s) visible, need 2+")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_gpu  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("HSLOTH_BIN", "")
ONLY_FAILURE = "--failure-only" in sys.argv[2:]
DATA = os.environ.get("HSLOTH_TESTDATA", "")
MPI = ["mpirun", "--allow-run-as-root", "--bind-to", "none", "-x", "PATH", "-x", "LD_LIBRARY_PATH"]
GPUS = torch.cuda.device_count()
TPB, STEPS, LOG = 8192, 40, 5
failures, results = [], {"gpus": GPUS, "gpu": torch.cuda.get_device_name(0), "tokens_per_batch": TPB}


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def run(args, np=1, env=None, timeout=900):
    cmd = ([*MPI, "-np", str(np)] if np > 1 else []) + [BIN, *map(str, args)]
    t0 = time.time()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as e:  # a hang is a failure with what it printed, not a stuck test
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        r = subprocess.CompletedProcess(cmd, -9, out, err + f"\n(timed out after {timeout}s)")
    return r, time.time() - t0


def train(d, name, np, accum, steps=STEPS, env=None, timeout=900):
    args = ["train", "--model.path", f"{d}/model", "--data.train", f"{d}/shards", "--run.dir", f"{d}/{name}",
            "--lora.r", 16, "--lora.alpha", 32, "--train.lr", 1e-4, "--train.schedule", "constant",
            "--train.warmup_steps", 0, "--train.max_steps", steps, "--train.tokens_per_batch", TPB,
            "--train.grad_accum", accum, "--train.seed", 3, "--log.every", LOG, "--dist.check_every", 10]
    return run(args, np, env, timeout)


def metrics(d, name):
    return [json.loads(x) for x in open(f"{d}/{name}/metrics.jsonl") if x.strip()]


def main():
    if not BIN or not os.path.exists(BIN) or not DATA:
        print("skipping: hsloth or the shared data ($HSLOTH_TESTDATA) missing")
        return 77
    d = tempfile.mkdtemp(prefix="hs-dist-gpu-")
    try:
        model_gpu.make("llama3.2-1b", f"{d}/model")
        for f in ["tokenizer.json", "tokenizer_config.json"]:
            p = os.path.join(DATA, "tokenizers", "llama2", f)
            if os.path.exists(p):
                shutil.copy(p, f"{d}/model/{f}")
        # ShareGPT four times over plus Alpaca (311k tokens): enough micro-batches per epoch that every world
        # size packs them about equally full (7.8-8.0k of 8192 tokens).
        files = ["sharegpt_500.json"] * 4 + ["alpaca_tiny.json"]
        inputs = ",".join(os.path.join(DATA, "datasets", f) for f in files)
        r, _ = run(["prep", "--input", inputs, "--tokenizer",
                    f"{d}/model", "--out", f"{d}/shards", "--template", "chatml", "--loss", "response",
                    "--max-len", 4096, "--too-long", "truncate"])
        if r.returncode != 0:
            print(r.stdout[-2000:], r.stderr[-2000:])
            return 1

        # 1. scaling at a fixed per-GPU batch
        per_gpu = {}
        for np in [n for n in (1, 2, 4, 8) if n <= GPUS and not ONLY_FAILURE]:
            r, secs = train(d, f"scale{np}", np, 1)
            log = r.stdout + r.stderr
            if r.returncode != 0:
                print(log[-4000:])
                check(False, f"-np {np} run exits 0 (got {r.returncode})")
                continue
            if np > 1:
                check("communicator: NCCL" in log, f"-np {np} uses NCCL")
                check("parameters differ" not in log, f"-np {np}: parameter checksums equal across ranks")
            ms = [m for m in metrics(d, f"scale{np}") if "loss" in m]
            warm = [m for m in ms if m["step"] > 2 * LOG]  # skip the first windows (allocator, autotuning)
            tps = sum(m["tokens_per_s"] for m in warm) / len(warm)
            per_gpu[np] = tps / np
            results[f"np{np}"] = {"tokens_per_s": tps, "tokens_per_s_per_gpu": tps / np,
                                  "mfu": warm[-1].get("mfu"), "peak_mem_bytes": warm[-1]["peak_mem_bytes"],
                                  "imbalance_mean": sum(m["imbalance"] for m in ms) / len(ms), "wall_s": secs}
            eff = per_gpu[np] / per_gpu[1] if 1 in per_gpu else float("nan")
            results[f"np{np}"]["scaling_efficiency"] = eff
            print(f"     -np {np}: {tps:,.0f} tokens/s, {tps / np:,.0f} per GPU, efficiency {eff:.3f}, "
                  f"MFU {warm[-1].get('mfu', 0):.3f}, imbalance {results[f'np{np}']['imbalance_mean']:.4f}, "
                  f"peak {warm[-1]['peak_mem_bytes'] / 2**30:.1f} GiB", flush=True)

        # 2. -np N equals -np 1 with grad_accum N
        if not ONLY_FAILURE:
            n = max(per_gpu) if per_gpu else GPUS
            r1, _ = train(d, f"accum{n}", 1, n, steps=20)
            rn, _ = train(d, f"world{n}", n, 1, steps=20)
            if r1.returncode == 0 and rn.returncode == 0:
                a = [m["loss"] for m in metrics(d, f"accum{n}") if "loss" in m]
                b = [m["loss"] for m in metrics(d, f"world{n}") if "loss" in m]
                worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
                results["equivalence"] = {"world": n, "losses_np1_accum": a, "losses_npN": b, "worst_rel": worst}
                check(len(a) == len(b) == 4 and worst <= 0.02,
                      f"-np {n} vs -np 1 x grad_accum {n}: per-step loss within {worst:.2e} relative (bound 2e-2)")
            else:
                print((r1.stdout + r1.stderr)[-3000:], (rn.stdout + rn.stderr)[-3000:])
                check(False, "equivalence runs exit 0")

        # 3. a failing rank ends the NCCL job
        env = dict(os.environ, HSLOTH_FAIL_AT="1:3")
        r, secs = train(d, "fail", 2, 1, steps=10, env=env, timeout=120)
        log = r.stdout + r.stderr
        results["failure"] = {"exit": r.returncode, "seconds": secs}
        check(r.returncode != 0 and secs < 30 and "injected failure at step 3" in log,
              f"-np 2 with rank 1 failing at step 3: exit {r.returncode} after {secs:.1f}s with its message")

        # 4. out of GPU memory: one 311k-token micro-batch cannot fit; the error says which setting to lower
        r, secs = run(["train", "--model.path", f"{d}/model", "--data.train", f"{d}/shards", "--run.dir",
                       f"{d}/oom", "--train.tokens_per_batch", 400000, "--train.max_steps", 2], timeout=300)
        log = r.stdout + r.stderr
        results["oom"] = {"exit": r.returncode, "seconds": secs,
                          "message": [x for x in log.splitlines() if "out of GPU memory" in x][:1]}
        check(r.returncode == 1 and "out of GPU memory" in log and "lower train.tokens_per_batch" in log,
              f"OOM: exit {r.returncode} after {secs:.1f}s, names train.tokens_per_batch / train.grad_ckpt")
        if r.returncode != 1:
            print(log[-3000:])
    finally:
        shutil.rmtree(d, ignore_errors=True)
    out = os.environ.get("OUT")
    if out:
        with open(os.path.join(out, "dist_gpu.json"), "w") as f:
            json.dump(results, f, indent=2)
    print(f"{len(failures)} failure(s)" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
