"""QLoRA on a 70B shape on one GPU (issue 13): hsloth `finetune = qlora` on a random-weight Llama-3.1-70B folder
written directly in transformers' pre-quantized NF4 layout (bench/write_nf4_folder.py, ~39.6 GB), tokens/s and peak
GPU memory at 2,048 and 4,096 tokens per micro-batch.

  python3 bench/qlora_70b.py --hsloth build-gpu/hsloth --work /tmp/hs-qlora70b --out $OUT

Protocol (bench/train_vs_peers.py's, imported from there: rows, prep, metrics): rows of exactly --seq (2048) token
ids (seeded random TinyLlama ids decoded to text, `hsloth prep --format text --max-len 2048 --too-long truncate`),
(warm-up + timed) x tokens / seq of them; for each --tokens value T one `hsloth train` with finetune = qlora,
LoRA r=16, alpha=32, dropout 0 on q,k,v,o,gate,up,down, AdamW lr 1e-4 constant (weight decay 0.01, no clipping),
tokens_per_batch = T (T / seq rows packed into one micro-batch), grad_accum 1, train.grad_ckpt = --grad-ckpt
(offload), bf16, --warmup (2) + --timed (4) steps. tokens/s = timed tokens / (elapsed_s[last] - elapsed_s[warm-up])
from metrics.jsonl; peak = peak_mem_bytes of the last step (the allocator's peak since the process started). MFU on
train_vs_peers' basis (4 N_matmul + attention per token; H100/H200 SXM bf16 dense 790 TFLOP/s).

Outputs: $OUT/qlora_70b.md (the table), $OUT/qlora_70b.json (records, folder-writing speed, GPU, versions,
commands), $OUT/logs/. Nothing here asserts a speed.

--dry-run: no GPU. The tiny-llama shape (write_nf4_folder's tiny NF4 folder), rows of 128 tokens, --tokens 128,256,
1 + 2 steps, float32 on the CPU; checks that every run finishes with finite losses and that the step-1 loss (LoRA B
= 0: the base model's) of each run is transformers' float32 loss of one micro-batch's rows on the folder's
dequantized weights (when bitsandbytes imports, else skipped with a note); exit 1 otherwise.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import write_nf4_folder as W  # noqa: E402
from train_vs_peers import (H100_PEAK_TFLOPS, LORA_ALPHA, LORA_R, LR, TARGETS, Bench,  # noqa: E402
                            flops_per_token, read_samples, write_rows_jsonl)


def say(*a):
    print(*a, flush=True)


def run(cmd, log, timeout):
    """cmd with stdout + stderr into log; (rc, text). rc 124 on timeout."""
    with open(log, "w") as f:
        f.write("$ " + " ".join(map(str, cmd)) + "\n")
        f.flush()
        try:
            rc = subprocess.run(list(map(str, cmd)), stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 124
            f.write(f"\nqlora_70b: killed after {timeout}s\n")
    return rc, open(log, errors="replace").read()


def make_rows(a, model_dir, n_rows):
    """n_rows rows of exactly a.seq tokens, prepped by hsloth into one shard folder."""
    d = os.path.join(a.work, f"shards-rows-{n_rows}x{a.seq}")
    src = os.path.join(a.work, f"rows-{n_rows}x{a.seq}.jsonl")
    shutil.rmtree(d, ignore_errors=True)
    write_rows_jsonl(os.path.join(model_dir, "tokenizer.json"), n_rows, src, seq=a.seq)
    cmd = [a.hsloth, "prep", "--input", src, "--tokenizer", model_dir, "--out", d, "--format", "text",
           "--max-len", a.seq, "--too-long", "truncate"]
    rc, text = run(cmd, os.path.join(a.out, "logs", "prep.log"), 900)
    if rc != 0:
        raise SystemExit(f"hsloth prep failed (rc {rc}):\n{text[-3000:]}")
    samples = read_samples(d)
    if len(samples) != n_rows or any(len(s[0]) != a.seq for s in samples):
        raise SystemExit(f"{d}: expected {n_rows} rows of {a.seq} tokens, got {len(samples)} samples of lengths "
                         f"{sorted(set(len(s[0]) for s in samples))}")
    return d, " ".join(map(str, cmd))


def train(a, model_dir, shards, tokens, cfg):
    """One `hsloth train` (finetune = qlora); the record of its timed steps."""
    tag = f"{a.shape}-qlora-{tokens}-{a.grad_ckpt}"
    run_dir = os.path.join(a.work, f"run-{tag}")
    shutil.rmtree(run_dir, ignore_errors=True)
    ini = os.path.join(a.work, f"{tag}.ini")
    with open(ini, "w") as f:
        f.write(f"# {a.hsloth} train --config {ini}\n"
                f"# written by bench/qlora_70b.py: {a.shape}, {tokens} tokens per micro-batch\n"
                "finetune = qlora\n\n"
                f"[model]\npath = {model_dir}\ndtype = {'float32' if a.dry_run else 'bf16'}\n\n"
                f"[data]\ntrain = {shards}\n\n"
                f"[run]\ndir = {run_dir}\n\n"
                f"[lora]\nr = {LORA_R}\nalpha = {LORA_ALPHA}\ndropout = 0\ntargets = {' '.join(TARGETS)}\n\n"
                f"[train]\nlr = {LR}\nschedule = constant\nwarmup_steps = 0\nmax_steps = {a.warmup + a.timed}\n"
                f"tokens_per_batch = {tokens}\ngrad_accum = 1\nweight_decay = 0.01\nmax_grad_norm = 0\nseed = 0\n"
                f"packing = packed\ngrad_ckpt = {a.grad_ckpt}\n\n"
                "[log]\nevery = 1\n")
    cmd = [a.hsloth, "train", "--config", ini]
    rec = dict(shape=a.shape, finetune="qlora", tokens_per_batch=tokens, rows_per_step=tokens // a.seq, seq=a.seq,
               grad_ckpt=a.grad_ckpt, lora_r=LORA_R, cmd=" ".join(cmd))
    t = time.time()
    rc, text = run(cmd, os.path.join(a.out, "logs", f"{tag}.log"), a.timeout)
    rec["wall_s"] = round(time.time() - t, 1)
    if rc != 0:
        oom = "out of gpu memory" in text.lower() or "out of memory" in text.lower()
        rec["error"] = "OOM" if oom else f"timeout ({a.timeout}s)" if rc == 124 else f"rc {rc}: " + " | ".join(
            [ln for ln in text.splitlines() if ln.startswith(("error", "  hint"))][:2] or text.splitlines()[-2:])
        return rec
    ms = [json.loads(x) for x in open(os.path.join(run_dir, "metrics.jsonl")) if x.strip()]
    ms = [m for m in ms if "loss" in m]
    w = a.warmup
    if len(ms) != w + a.timed or [m["step"] for m in ms] != list(range(1, len(ms) + 1)):
        rec["error"] = f"metrics.jsonl has steps {[m['step'] for m in ms]}, expected 1..{w + a.timed}"
        return rec
    timed = ms[w:]
    dt = ms[-1]["elapsed_s"] - (ms[w - 1]["elapsed_s"] if w > 0 else 0.0)
    rec["timed_s"] = round(dt, 3)
    rec["tok_s"] = round(sum(m["tokens"] for m in timed) / dt, 1)
    rec["tokens_per_step"] = round(sum(m["tokens"] for m in timed) / len(timed), 1)
    rec["step_s"] = round(dt / len(timed), 3)
    peak = ms[-1].get("peak_mem_bytes")
    rec["peak_gib"] = round(peak / 2**30, 2) if peak and not a.dry_run else None
    rec["losses"] = [m["loss"] for m in ms]
    rec["loss_step1"] = ms[0]["loss"]
    rec["elapsed_before_step1_s"] = None if "elapsed_s" not in ms[0] else round(ms[0]["elapsed_s"], 2)
    fpt = flops_per_token(cfg, a.seq)
    rec["flops_per_token"] = fpt
    if a.peak_tflops:
        rec["mfu_basis"] = round(rec["tok_s"] * fpt / (a.peak_tflops * 1e12), 4)
    if not all(math.isfinite(x) for x in rec["losses"]):
        rec["error"] = f"non-finite loss: {rec['losses']}"
    shutil.rmtree(os.path.join(run_dir, "checkpoints"), ignore_errors=True)
    return rec


def table(recs, folder):
    lines = ["| shape | tokens / micro-batch | grad_ckpt | tokens/s | step (s) | peak (GiB) | MFU | loss first -> last | "
             "whole run (s) |", "|---|---:|---|---:|---:|---:|---:|---|---:|"]
    for r in recs:
        if r.get("error"):
            lines.append(f"| {r['shape']} | {r['tokens_per_batch']:,} | {r['grad_ckpt']} | {r['error']} | | | | | {r['wall_s']} |")
            continue
        mfu = f"{100 * r['mfu_basis']:.1f}%" if r.get("mfu_basis") is not None else "-"
        peak = f"{r['peak_gib']:.2f}" if r.get("peak_gib") is not None else "-"
        lines.append(f"| {r['shape']} | {r['tokens_per_batch']:,} | {r['grad_ckpt']} | {r['tok_s']:,.0f} | "
                     f"{r['step_s']:.2f} | {peak} | {mfu} | {r['losses'][0]:.3f} -> {r['losses'][-1]:.3f} | {r['wall_s']} |")
    if folder:
        lines.append("")
        lines.append("Whole run: `hsloth train` from start to exit (loading the folder included).")
        lines.append(f"Folder: {folder['bytes'] / 1e9:.1f} GB pre-quantized NF4 ({folder['files']} files, "
                     f"{folder['nf4_weights']} NF4 weights), written in {folder['write_s']:.0f} s "
                     f"({folder['write_mb_s']:.0f} MB/s, {folder['jobs']} processes)." if "write_s" in folder else
                     f"Folder: {folder.get('out')} (reused).")
    return "\n".join(lines)


def check_dry(a, model_dir, shards, recs):
    """--dry-run: every run's step-1 loss (LoRA B = 0) is transformers' float32 loss of one micro-batch of rows on the
    folder's weights (bitsandbytes' dequantize_4bit of each projection: write_nf4_folder.transformers_models).
    Returns False on a mismatch."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:
        say(f"  dry-run loss check skipped: bitsandbytes not importable ({e})")
        return True
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    _, m = W.transformers_models(model_dir)
    rows = [torch.from_numpy(s[0].astype("int64")) for s in read_samples(shards)]
    ok = True
    for r in recs:
        if r.get("error"):
            ok = False
            continue
        k = r["rows_per_step"]
        # the packed micro-batch of k rows: the mean over its k * (seq - 1) targets (each row its own segment)
        ref = []
        with torch.no_grad():
            for i in range(0, len(rows) - k + 1, k):
                x = torch.stack(rows[i:i + k])
                ref.append(m(input_ids=x, labels=x).loss.item())
        j = min(range(len(ref)), key=lambda i: abs(ref[i] - r["loss_step1"]))
        diff = abs(ref[j] - r["loss_step1"])
        gap = min([abs(x - y) for i, x in enumerate(ref) for y in ref[i + 1:]] or [1.0])
        good = diff <= 1e-5 * abs(ref[j]) and diff < 0.5 * gap
        r["dry_check"] = dict(ok=good, ref=ref[j], rows=[j * k, j * k + k - 1], diff=diff, gap=gap)
        say(f"  dry-run check: {r['tokens_per_batch']} tokens, step-1 loss {r['loss_step1']:.7f} = transformers' "
            f"float32 loss of rows {j * k}..{j * k + k - 1}: {ref[j]:.7f} (diff {diff:.1e}; groups differ by >= "
            f"{gap:.1e}): {'ok' if good else 'FAIL'}")
        ok = ok and good
    return ok


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hsloth", default="build-gpu/hsloth", help="the hsloth binary (a CUDA build on the GPU)")
    p.add_argument("--shape", default=None, help=f"one of {', '.join(W.SHAPES)} (llama3.1-70b; --dry-run tiny-llama)")
    p.add_argument("--tokens", default=None, help="tokens per micro-batch, comma list (2048,4096; --dry-run 128,256)")
    p.add_argument("--seq", type=int, default=None, help="row length (2048; --dry-run 128)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (2; --dry-run 1)")
    p.add_argument("--timed", type=int, default=None, help="timed steps (4; --dry-run 2)")
    p.add_argument("--grad-ckpt", default="offload", choices=["off", "on", "offload"])
    p.add_argument("--work", default="/tmp/hs-qlora70b", help="model folder (~40 GB for 70B), shards, runs")
    p.add_argument("--out", default=os.environ.get("OUT", "/tmp/out"))
    p.add_argument("--testdata", default=os.environ.get("HSLOTH_TESTDATA") or os.path.join(HERE, "..", "testdata"))
    p.add_argument("--jobs", type=int, default=0, help="folder-writer processes (default: one per file <= CPUs)")
    p.add_argument("--peak-tflops", type=float, default=0, help=f"MFU peak (default {H100_PEAK_TFLOPS:g} on H100/H200)")
    p.add_argument("--timeout", type=int, default=600, help="seconds per hsloth train")
    p.add_argument("--reuse", action="store_true", help="reuse the model folder in --work if it is there")
    p.add_argument("--keep", action="store_true", help="keep the model folder (default: removed at the end)")
    p.add_argument("--dry-run", action="store_true", help="tiny shape on the CPU (see above)")
    a = p.parse_args(argv)
    dry = a.dry_run
    a.shape = a.shape or ("tiny-llama" if dry else "llama3.1-70b")
    a.tokens = [int(x) for x in (a.tokens or ("128,256" if dry else "2048,4096")).split(",")]
    a.seq = a.seq or (128 if dry else 2048)
    a.warmup = a.warmup if a.warmup is not None else (1 if dry else 2)
    a.timed = a.timed if a.timed is not None else (2 if dry else 4)
    if a.timed < 1 or any(t % a.seq for t in a.tokens):
        raise SystemExit(f"--timed must be >= 1 and every --tokens a multiple of --seq {a.seq}")
    a.hsloth, a.work, a.out = os.path.abspath(a.hsloth), os.path.abspath(a.work), os.path.abspath(a.out)
    a.testdata = os.path.abspath(a.testdata)
    if not os.path.exists(a.hsloth):
        raise SystemExit(f"no hsloth binary at {a.hsloth}\n  HINT: build it (cmake --build build-gpu --target hsloth)")
    os.makedirs(os.path.join(a.out, "logs"), exist_ok=True)
    os.makedirs(a.work, exist_ok=True)

    # train_vs_peers' probe (a subprocess: this process never touches CUDA)
    gpu = {"name": "cpu", "note": "--dry-run: not probed"} if dry else Bench.gpu(None)
    if gpu.get("name") == "cpu" and not dry:
        raise SystemExit("no CUDA device visible to torch: this is a GPU benchmark (--dry-run checks it on a CPU)")
    if not a.peak_tflops and any(x in gpu.get("name", "") for x in ("H100", "H200")):
        a.peak_tflops = H100_PEAK_TFLOPS
    version = subprocess.run([a.hsloth, "--version"], capture_output=True, text=True).stdout.strip()
    say(f"GPU: {gpu}; hsloth: {version}")
    result = dict(gpu=gpu, hsloth=version, shape=a.shape, args=vars(a), records=[])

    def save():
        with open(os.path.join(a.out, "qlora_70b.json"), "w") as f:
            json.dump(result, f, indent=1)
        with open(os.path.join(a.out, "qlora_70b.md"), "w") as f:
            f.write(table(result["records"], result.get("folder")) + "\n")

    model_dir = os.path.join(a.work, f"model-{a.shape}-nf4")
    if a.reuse and os.path.exists(os.path.join(model_dir, "config.json")):
        result["folder"] = {"out": model_dir, "reused": True}
        say(f"model folder {model_dir} (reused)")
    else:
        result["folder"] = W.write_folder(a.shape, model_dir, a.testdata, jobs=a.jobs, log=say)
    save()
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    t = time.time()
    n_rows = (a.warmup + a.timed) * max(a.tokens) // a.seq
    shards, prep_cmd = make_rows(a, model_dir, n_rows)
    result["prep"] = dict(rows=n_rows, seq=a.seq, secs=round(time.time() - t, 1), cmd=prep_cmd)
    say(f"prep: {n_rows} rows of {a.seq} tokens in {time.time() - t:.1f}s")
    failed = False
    for tokens in a.tokens:
        rec = train(a, model_dir, shards, tokens, cfg)
        result["records"].append(rec)
        save()
        say(f"  {tokens} tokens/micro-batch: " + (rec.get("error") or
            f"{rec['tok_s']:,.0f} tok/s, peak {rec['peak_gib']} GiB, losses {[round(x, 3) for x in rec['losses']]}"))
        failed = failed or bool(rec.get("error"))
    if dry and not check_dry(a, model_dir, shards, result["records"]):
        failed = True
    save()
    say("")
    say(table(result["records"], result.get("folder")))
    say(f"\n(written to {a.out}/qlora_70b.md and qlora_70b.json)")
    if not a.keep:
        shutil.rmtree(model_dir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
