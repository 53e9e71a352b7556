"""GPU training vs HF transformers + PEFT (label `cuda`): LoRA on random Qwen3-0.6B- and Llama-3.2-1B-shaped
models in bf16, 20 steps on Alpaca (../shared/data/datasets/alpaca_tiny.json, prepped by `hsloth prep`).

Each optimizer step is one packed micro-batch holding every sample (train.tokens_per_batch above the data's
token count), so HF + PEFT replays the same steps from the shard files (h5py): same LoRA init
(torch.manual_seed(seed) + get_peft_model; PEFT keeps fp32 adapters on a bf16 base), loss = sum of token
cross-entropies over trained tokens / their count, clip_grad_norm_, torch AdamW, transformers' schedule.
Pass: every step's loss within 2% of HF's, and the loss decreases. Reports tokens/s of both.
usage: train_gpu.py HSLOTH_BIN   (writes $OUT/train_gpu.json when $OUT is set; exit 77 without CUDA/oracles)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

try:
    import h5py
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
except ImportError as e:
    print(f"skipping: {e}")
    sys.exit(77)
if not torch.cuda.is_available():
    print("skipping: no CUDA device visible to torch")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_gpu  # noqa: E402  (SHAPES and make(): random bf16 models in the published shapes)

BIN = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("HSLOTH_BIN", "")
DATA = os.environ.get("HSLOTH_TESTDATA", "")
SEED, STEPS, LR, WARMUP, R, ALPHA, CLIP = 3, 20, 1e-3, 2, 16, 32, 1.0
TOKENIZER = {"qwen3-0.6b": "qwen3", "llama3.2-1b": "llama2"}
TOL = 0.02
failures, results = [], {}


def hsloth(*args):
    r = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout[-3000:], r.stderr[-3000:])
        raise SystemExit(f"hsloth {args[0]} failed ({r.returncode})")
    return r


def read_shards(folder):
    samples = []
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    for sh in manifest["shards"]:
        with h5py.File(os.path.join(folder, sh["file"]), "r") as f:
            ids, mask, off = f["input_ids"][:], f["loss_mask"][:], f["offsets"][:]
            for i in range(len(off) - 1):
                samples.append((ids[off[i]:off[i + 1]].tolist(), mask[off[i]:off[i + 1]].tolist()))
    return samples


def hf_replay(model_dir, samples):
    base = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16,
                                                              attn_implementation="sdpa").cuda()
    torch.manual_seed(SEED)
    pm = get_peft_model(base, LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=0.0, task_type="CAUSAL_LM",
                                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                         "up_proj", "down_proj"]))
    pm.train()
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    sched = transformers.get_linear_schedule_with_warmup(opt, WARMUP, STEPS)
    T = max(len(s[0]) for s in samples)
    ids = torch.zeros(len(samples), T, dtype=torch.long)
    att = torch.zeros(len(samples), T, dtype=torch.long)
    tgt_mask = torch.zeros(len(samples), T, dtype=torch.bool)
    for i, (s, m) in enumerate(samples):
        ids[i, :len(s)] = torch.tensor(s)
        att[i, :len(s)] = 1
        tgt_mask[i, :len(s)] = torch.tensor(m, dtype=torch.bool)
    ids, att, tgt_mask = ids.cuda(), att.cuda(), tgt_mask.cuda()
    count = int(tgt_mask[:, 1:].sum())
    losses = []
    torch.cuda.synchronize()
    t0 = time.time()
    for _ in range(STEPS):
        opt.zero_grad()
        total = 0.0
        for c in range(0, len(samples), 8):  # chunks keep the float32 [rows, T, vocab] logits small
            sl = slice(c, c + 8)
            logits = pm(input_ids=ids[sl], attention_mask=att[sl]).logits[:, :-1].float()
            m = tgt_mask[sl, 1:]
            s = torch.nn.functional.cross_entropy(logits[m], ids[sl, 1:][m], reduction="sum")
            (s / count).backward()
            total += s.item()
            del logits
        losses.append(total / count)
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        sched.step()
    torch.cuda.synchronize()
    tokens = int(att.sum()) * STEPS
    del pm, base
    torch.cuda.empty_cache()
    return losses, tokens / (time.time() - t0)


def main():
    if not BIN or not os.path.exists(BIN) or not DATA:
        print("skipping: hsloth or the shared data ($HSLOTH_TESTDATA) missing")
        return 77
    for name in model_gpu.SHAPES:
        print(f"== {name}", flush=True)
        d = tempfile.mkdtemp(prefix=f"hs-train-gpu-{name}-")
        try:
            model_gpu.make(name, f"{d}/model")
            tok = os.path.join(DATA, "tokenizers", TOKENIZER[name])
            for f in ["tokenizer.json", "tokenizer_config.json"]:
                if os.path.exists(os.path.join(tok, f)):
                    shutil.copy(os.path.join(tok, f), f"{d}/model/{f}")
            hsloth("prep", "--input", os.path.join(DATA, "datasets", "alpaca_tiny.json"), "--tokenizer", f"{d}/model",
                   "--out", f"{d}/shards", "--template", "alpaca", "--loss", "response")
            samples = read_shards(f"{d}/shards")
            total = sum(len(s[0]) for s in samples)
            t0 = time.time()
            hsloth("train", "--model.path", f"{d}/model", "--data.train", f"{d}/shards", "--run.dir", f"{d}/run",
                   "--lora.r", R, "--lora.alpha", ALPHA, "--train.lr", LR, "--train.schedule", "linear",
                   "--train.warmup_steps", WARMUP, "--train.max_steps", STEPS, "--train.tokens_per_batch",
                   total + 64, "--train.max_grad_norm", CLIP, "--train.seed", SEED, "--log.every", 1)
            wall = time.time() - t0
            # the same steps with gradient checkpointing: same losses (up to GPU nondeterminism), less memory
            hsloth("train", "--model.path", f"{d}/model", "--data.train", f"{d}/shards", "--run.dir", f"{d}/run-gc",
                   "--lora.r", R, "--lora.alpha", ALPHA, "--train.lr", LR, "--train.schedule", "linear",
                   "--train.warmup_steps", WARMUP, "--train.max_steps", STEPS, "--train.tokens_per_batch",
                   total + 64, "--train.max_grad_norm", CLIP, "--train.seed", SEED, "--log.every", 1,
                   "--train.grad_ckpt", "on")
            gc = [json.loads(x) for x in open(f"{d}/run-gc/metrics.jsonl")]
            gc = [m for m in gc if "loss" in m]
            ms = [json.loads(x) for x in open(f"{d}/run/metrics.jsonl")]
            ours = [m["loss"] for m in ms if "loss" in m]
            tps = [m["tokens_per_s"] for m in ms if "loss" in m]
            ref, hf_tps = hf_replay(f"{d}/model", samples)
            worst = max(abs(a - b) / abs(b) for a, b in zip(ours, ref))
            gc_worst = max(abs(a["loss"] - b) / abs(b) for a, b in zip(gc, ours))
            peak = [m["peak_mem_bytes"] for m in ms if "loss" in m][-1]
            gc_peak = gc[-1]["peak_mem_bytes"]
            mfu = [m.get("mfu") for m in ms if "loss" in m][-1]
            ok = len(ours) == STEPS and worst <= TOL and ours[-1] < ours[0] and gc_worst <= 1e-3 and gc_peak < peak
            print(f"  grad_ckpt on: worst per-step loss diff vs off {gc_worst:.2e} (tol 1e-3); peak GPU memory "
                  f"{peak / 2**30:.2f} GiB -> {gc_peak / 2**30:.2f} GiB; MFU (LoRA, 4P/token) {mfu}")
            print(f"  samples {len(samples)}, tokens/step {total}")
            for k, (a, b) in enumerate(zip(ours, ref)):
                print(f"  step {k + 1:2d}: hsloth {a:.5f}  hf+peft {b:.5f}  rel {abs(a - b) / abs(b):.2e}")
            print(f"  {'ok ' if ok else 'FAIL'} worst per-step relative diff {worst:.3e} (tol {TOL}); "
                  f"loss {ours[0]:.4f} -> {ours[-1]:.4f}")
            print(f"  tokens/s (steady, steps 5+): hsloth {sorted(tps[4:])[len(tps[4:]) // 2]:.0f}, "
                  f"hf+peft {hf_tps:.0f} (padded batch, incl. warm-up); hsloth wall {wall:.1f}s")
            results[name] = {"ours": ours, "hf": ref, "worst_rel": worst, "ok": ok, "grad_ckpt_worst_rel": gc_worst,
                             "peak_mem_bytes": peak, "grad_ckpt_peak_mem_bytes": gc_peak, "mfu": mfu,
                             "tokens_per_s": tps, "hf_tokens_per_s": hf_tps}
            if not ok:
                failures.append(name)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "train_gpu.json"), "w") as f:
            json.dump(results, f, indent=1)
    print(f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
