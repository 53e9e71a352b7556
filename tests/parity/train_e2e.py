"""`hsloth train` end to end on CPU, against transformers + PEFT as the oracle.

Data: the demo task (launch/demo/make_demo.py) with its own byte-level BPE tokenizer, prepped by
`hsloth prep` (response-only loss). Model: a tiny random Llama written by transformers (hf_models.py).

1. HF + PEFT replay: with tokens_per_batch large enough that each optimizer step is one packed micro-batch
   holding every training sample, the step's samples do not depend on our batch plan, so transformers +
   PEFT can replay the run: same LoRA init (torch.manual_seed(seed) + get_peft_model), loss = sum of token
   cross-entropies over trained tokens / their count, clip_grad_norm_, torch AdamW, transformers' linear
   warmup schedule. Per-step losses must match to 1e-4 relative, the final adapter to 1e-3.
2. Packed and padded batches give the same loss and gradient norm at every step.
3. Checkpointing does not change the result; a run killed with SIGKILL after a checkpoint and resumed with
   train.resume = auto ends with a bit-identical adapter; SIGTERM checkpoints and exits with code 75.
4. What the user sees: metrics.jsonl, TensorBoard events (read by the tensorboard package), the resolved
   config, eval records, and errors for a tokenizer/shard mismatch and for an existing run.dir.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("HSLOTH_SOURCE", os.path.dirname(os.path.dirname(HERE)))
BIN = os.environ.get("HSLOTH_BIN", "")
sys.path.insert(0, HERE)
failures = []
SEED, STEPS, LR, WARMUP, WD, CLIP, R, ALPHA = 3, 24, 5e-3, 3, 0.01, 1.0, 4, 8
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def hsloth(*args, check_rc=True, **kw):
    r = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=600, **kw)
    if check_rc and r.returncode != 0:
        print(r.stdout, r.stderr)
        raise SystemExit(f"hsloth {args[0]} failed with {r.returncode}")
    return r


def train_args(d, run, **over):
    keys = {"model.path": f"{d}/model", "data.train": f"{d}/shards/train", "data.eval": f"{d}/shards/eval",
            "run.dir": f"{d}/{run}", "lora.r": R, "lora.alpha": ALPHA, "train.lr": LR, "train.schedule": "linear",
            "train.warmup_steps": WARMUP, "train.max_steps": STEPS, "train.tokens_per_batch": 100000,
            "train.max_grad_norm": CLIP, "train.weight_decay": WD, "train.seed": SEED, "log.every": 1}
    keys.update(over)
    out = ["train"]
    for k, v in keys.items():
        out += [f"--{k}", str(v)]
    return out


def metrics(d, run):
    with open(f"{d}/{run}/metrics.jsonl") as f:
        return [json.loads(line) for line in f]


def train_losses(d, run):
    return [m["loss"] for m in metrics(d, run) if "loss" in m]


def hf_replay(d):
    """The same run in transformers + PEFT, from the shard files (h5py) and the model folder."""
    import h5py
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model

    import hf_models

    samples = []
    manifest = json.load(open(f"{d}/shards/train/manifest.json"))
    for sh in manifest["shards"]:
        with h5py.File(os.path.join(f"{d}/shards/train", sh["file"]), "r") as f:
            ids, mask, off = f["input_ids"][:], f["loss_mask"][:], f["offsets"][:]
            for i in range(len(off) - 1):
                samples.append((torch.tensor(ids[off[i]:off[i + 1]], dtype=torch.long),
                                torch.tensor(mask[off[i]:off[i + 1]], dtype=torch.bool)))
    base = hf_models.load(f"{d}/model")
    torch.manual_seed(SEED)
    pm = get_peft_model(base, LoraConfig(r=R, lora_alpha=ALPHA, target_modules=TARGETS, lora_dropout=0.0,
                                         task_type="CAUSAL_LM"))
    pm.train()
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=WD, foreach=False)
    sched = transformers.get_linear_schedule_with_warmup(opt, WARMUP, STEPS)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        total, count = 0.0, 0
        for ids, mask in samples:
            count += int(mask[1:].sum())
        for ids, mask in samples:
            logits = pm(input_ids=ids.unsqueeze(0)).logits[0, :-1].float()
            tgt = ids[1:]
            m = mask[1:]
            s = torch.nn.functional.cross_entropy(logits[m], tgt[m], reduction="sum")
            (s / count).backward()
            total += s.item()
        losses.append(total / count)
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        sched.step()
    state = {k.replace(".default", ""): v.detach().clone() for k, v in pm.named_parameters() if v.requires_grad}
    return losses, state


def wait_for_step(d, run, proc, step, timeout=120):
    t0 = time.time()
    path = f"{d}/{run}/metrics.jsonl"
    while time.time() - t0 < timeout and proc.poll() is None:
        if os.path.exists(path):
            with open(path) as f:
                if any(json.loads(x).get("step", -1) >= step and "loss" in json.loads(x) for x in f if x.strip()):
                    return True
        time.sleep(0.005)
    return False


def main():
    if not BIN or not os.path.exists(BIN):
        print("hsloth binary not found; skipping")
        return 77
    try:
        import h5py  # noqa: F401
        import peft  # noqa: F401
        import tokenizers  # noqa: F401
        import torch
        import transformers  # noqa: F401
        from safetensors.torch import load_file
    except ImportError as e:
        print(f"oracle missing ({e}); skipping")
        return 77
    import hf_models

    d = tempfile.mkdtemp(prefix="hs-train-e2e-")
    try:
        subprocess.run([sys.executable, f"{SRC}/launch/demo/make_demo.py", f"{d}/demo", "--train", "48", "--eval",
                        "16", "--vocab", "512"], check=True, capture_output=True)
        hf_models.make("tinyllama", f"{d}/model", seed=1, vocab_size=512)
        for f in ["tokenizer.json", "tokenizer_config.json"]:
            shutil.copy(f"{d}/demo/model/{f}", f"{d}/model/{f}")
        for split in ["train", "eval"]:
            hsloth("prep", "--input", f"{d}/demo/{split}.jsonl", "--tokenizer", f"{d}/model", "--out",
                   f"{d}/shards/{split}", "--loss", "response", "--template", "chatml")

        # 1. our run vs the HF + PEFT replay
        t0 = time.time()
        hsloth(*train_args(d, "A", **{"eval.exact_match": "true"}))
        print(f"train run A: {time.time() - t0:.1f}s", flush=True)
        ours = train_losses(d, "A")
        ref, ref_state = hf_replay(d)
        check(len(ours) == STEPS, f"{len(ours)} logged training steps")
        worst = max(abs(a - b) / abs(b) for a, b in zip(ours, ref))
        check(worst <= 1e-4, f"per-step loss vs HF+PEFT: worst relative diff {worst:.2e} "
                             f"(first {ours[0]:.5f}/{ref[0]:.5f}, last {ours[-1]:.5f}/{ref[-1]:.5f})")
        check(ours[-1] < ours[0], f"loss decreases ({ours[0]:.4f} -> {ours[-1]:.4f})")
        adapter = load_file(f"{d}/A/final/adapter_model.safetensors")
        check(sorted(adapter) == sorted(ref_state), f"final adapter has PEFT's {len(ref_state)} tensor names")
        rel = max(((adapter[k] - v).norm() / v.norm()).item() for k, v in ref_state.items())
        check(rel <= 1e-3, f"final adapter vs HF+PEFT: worst relative error {rel:.2e}")
        ev = [m for m in metrics(d, "A") if "eval_loss" in m]
        check(len(ev) == 2 and ev[-1]["eval_loss"] < ev[0]["eval_loss"],
              f"eval before/after: {[round(m['eval_loss'], 4) for m in ev]}")
        check(all("exact_match" in m for m in ev), "exact-match reported with eval")
        check(os.path.exists(f"{d}/A/config.resolved.ini"), "config.resolved.ini written")
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        acc = EventAccumulator(f"{d}/A/tensorboard")
        acc.Reload()
        tb = [e.value for e in acc.Scalars("train/loss")]
        check(len(tb) == STEPS and all(abs(a - b) <= 1e-6 * abs(b) for a, b in zip(tb, ours)),
              "TensorBoard train/loss holds every step")

        # 2. packed and padded agree
        hsloth(*train_args(d, "B", **{"train.packing": "padded"}))
        padded = metrics(d, "B")
        packed = metrics(d, "A")
        lp = [m for m in packed if "loss" in m]
        ld = [m for m in padded if "loss" in m]
        dl = max(abs(a["loss"] - b["loss"]) / a["loss"] for a, b in zip(lp, ld))
        dg = max(abs(a["grad_norm"] - b["grad_norm"]) / a["grad_norm"] for a, b in zip(lp, ld))
        check(dl <= 1e-5 and dg <= 1e-4, f"packed vs padded: loss {dl:.2e}, grad-norm {dg:.2e} (relative)")

        # 3. checkpoints and resume
        hsloth(*train_args(d, "C", **{"ckpt.every": 4, "ckpt.keep": 2}))
        a_bytes = open(f"{d}/A/final/adapter_model.safetensors", "rb").read()
        c_bytes = open(f"{d}/C/final/adapter_model.safetensors", "rb").read()
        check(a_bytes == c_bytes, "checkpointing does not change the trained adapter (bit-identical)")
        kept = sorted(os.listdir(f"{d}/C/checkpoints"))
        check(kept == ["step-20", "step-24"], f"ckpt.keep = 2 keeps the newest: {kept}")

        proc = subprocess.Popen([BIN, *train_args(d, "D", **{"ckpt.every": 4})], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        reached = wait_for_step(d, "D", proc, 10)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check(reached and not os.path.exists(f"{d}/D/final"), "run D killed (SIGKILL) mid-run after step 10")
        r = hsloth(*train_args(d, "D", **{"ckpt.every": 4, "train.resume": "auto"}))
        check("resumed from" in r.stderr, "resume = auto picks the newest checkpoint")
        d_bytes = open(f"{d}/D/final/adapter_model.safetensors", "rb").read()
        check(d_bytes == c_bytes, "killed + resumed run: final adapter bit-identical to the uninterrupted run")

        proc = subprocess.Popen([BIN, *train_args(d, "E")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        reached = wait_for_step(d, "E", proc, 5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        check(reached and proc.returncode == 75, f"SIGTERM: exit code {proc.returncode} (75 expected)")
        ck = sorted(os.listdir(f"{d}/E/checkpoints")) if os.path.isdir(f"{d}/E/checkpoints") else []
        check(len(ck) == 1, f"SIGTERM wrote a checkpoint: {ck}")
        hsloth(*train_args(d, "E", **{"train.resume": "auto"}))
        e_bytes = open(f"{d}/E/final/adapter_model.safetensors", "rb").read()
        check(e_bytes == c_bytes, "SIGTERM + resume: final adapter bit-identical")

        # damaged newest checkpoint: resume skips it with a warning
        newest = sorted(os.listdir(f"{d}/C/checkpoints"))[-1]
        with open(f"{d}/C/checkpoints/{newest}/train_state.safetensors", "r+b") as f:
            f.seek(200)
            f.write(b"\xff\xff\xff\xff")
        r = hsloth(*train_args(d, "C", **{"train.resume": "auto", "ckpt.every": 4}))
        check("skipping damaged checkpoint" in r.stderr and "step-20" in r.stderr,
              "a damaged checkpoint is skipped with a warning")

        # gradient checkpointing (on, offload) recomputes the same numbers: bit-identical adapters, dropout too
        digests = []
        for mode in ["off", "on", "offload"]:
            hsloth(*train_args(d, f"GC-{mode}", **{"train.grad_ckpt": mode, "lora.dropout": 0.1, "train.max_steps": 6}))
            digests.append(open(f"{d}/GC-{mode}/final/adapter_model.safetensors", "rb").read())
        check(digests[0] == digests[1] == digests[2],
              "train.grad_ckpt on/offload: final adapter bit-identical to off (lora.dropout 0.1)")

        # full fine-tuning: final/ is an HF folder that transformers loads, with the trainer's final eval loss
        hsloth(*train_args(d, "G", **{"finetune": "full", "train.max_steps": 4}))
        import transformers
        m = transformers.AutoModelForCausalLM.from_pretrained(f"{d}/G/final", dtype=torch.float32,
                                                              attn_implementation="eager").eval()
        import h5py
        tot, cnt = 0.0, 0
        man = json.load(open(f"{d}/shards/eval/manifest.json"))
        with torch.no_grad():
            for sh in man["shards"]:
                with h5py.File(os.path.join(f"{d}/shards/eval", sh["file"]), "r") as f:
                    ids, mask, off = f["input_ids"][:], f["loss_mask"][:], f["offsets"][:]
                for i in range(len(off) - 1):
                    x = torch.tensor(ids[off[i]:off[i + 1]], dtype=torch.long)
                    mk = torch.tensor(mask[off[i]:off[i + 1]], dtype=torch.bool)[1:]
                    lg = m(input_ids=x.unsqueeze(0)).logits[0, :-1]
                    tot += torch.nn.functional.cross_entropy(lg[mk], x[1:][mk], reduction="sum").item()
                    cnt += int(mk.sum())
        ours = [r for r in metrics(d, "G") if "eval_loss" in r][-1]["eval_loss"]
        check(abs(tot / cnt - ours) <= 1e-5 * ours,
              f"full fine-tuning: transformers loads final/ and gets our eval loss ({tot / cnt:.6f} vs {ours:.6f})")

        # 4. errors a user meets
        r = hsloth(*train_args(d, "A"), check_rc=False)
        check(r.returncode == 1 and "already holds checkpoints" in r.stderr, "an existing run.dir is not overwritten")
        shutil.copytree(f"{d}/model", f"{d}/model2")
        with open(f"{d}/model2/tokenizer.json", "a") as f:
            f.write(" ")
        r = hsloth(*train_args(d, "F", **{"model.path": f"{d}/model2"}), check_rc=False)
        check(r.returncode == 1 and "tokenizer" in r.stderr, "tokenizer/shard mismatch is an error naming it: "
              + r.stderr.strip().splitlines()[-1][:160] if r.stderr.strip() else "")
    finally:
        if not failures:
            shutil.rmtree(d, ignore_errors=True)
        else:
            print(f"work folder kept: {d}")
    print(f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
