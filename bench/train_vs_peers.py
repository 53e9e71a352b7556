"""hsloth vs HF + PEFT, HF + PEFT + Liger and Unsloth: LoRA training speed and memory on one GPU, in one run.

Every side trains the same random-weight HF folder (the published shape, bf16 safetensors, written here) on the
same tokens read from the same HDF5 shards (written by `hsloth prep`), with the same settings: LoRA r=16,
alpha=32, dropout 0 on q,k,v,o,gate,up,down; AdamW lr 1e-4; bf16; one micro-batch of BS x 2048 tokens per
optimizer step; gradient checkpointing off or on; 3 warm-up + 11 timed steps (--steps-warmup/--steps-timed).
The protocol is that of ../shared/peers/bench_unsloth.py (the Unsloth side IS that script, run through
unsloth.sh): tokens/s = timed tokens / wall time of the timed steps; peak = the CUDA caching allocator's peak
allocated bytes; MFU on the same FLOPs-per-token basis (formula printed under the table).

  python3 bench/train_vs_peers.py --hsloth build-gpu/hsloth --shapes llama3.2-1b,qwen3-0.6b \
      --sides hsloth,hf,liger,unsloth --ckpt 0 --mode rows --out $OUT --peers .peers

Modes:
  rows  rows of exactly 2048 token ids: seeded random token ids, decoded to text, one {"text": ...} record per
        row, `hsloth prep --format text --max-len 2048 --too-long truncate`; exactly (warm-up + timed) x BS rows
        per shard folder, so every side trains exactly these rows. hsloth packs each step's 8 rows into one
        row with 8 attention segments (its best-fit plan groups rows 8k..8k+7, the same groups as the Python
        sides' batches) and runs its steps in its seeded shuffled order; the Python sides take them in file
        order.
  chat  the shared ShareGPT + Alpaca records ($HSLOTH_TESTDATA/datasets), response-only loss, --max-len 2048
        (truncate). hsloth packs (train.tokens_per_batch = BS x 2048); HF / Liger take the samples in a seeded
        shuffled order, BS x 2048 real tokens per optimizer step, padded per micro-batch (a step is split into
        micro-batches of at most BS x 2048 padded slots, gradients accumulated, loss normalised by the step's
        trained tokens as hsloth does). Data is cycled when a run needs more than one epoch. tokens/s counts
        real (unpadded) tokens; trained tok/s the tokens with loss. Unsloth (bench_unsloth.py reads only
        2048-token rows) runs the HF worker's padded loop on a model loaded as bench_unsloth.py loads it
        (FastLanguageModel, its LoRA, "unsloth" checkpointing when on), in the peer wheels' install.

Long context (--seq-sweep 2048,8192,32768, rows mode): for each length, rows of exactly that many tokens (made
  and prepped as above), one row per step (--bs to change); every side trains them and the table gets one row per
  length (tokens/s and peak vs sequence length). --hsloth-ckpt on,offload runs hsloth once per mode. The Unsloth
  side runs PEERS/bench_unsloth.py with its module globals SEQ / WARMUP / TIMED set to the length and the step
  counts (`_unsloth`). A side that runs out of memory at a length is recorded as OOM.

Full fine-tuning (--finetune full): hsloth `finetune = full` (float32 masters, bf16 model weights); HF / Liger
  train every weight with the same AdamW settings, by default as HF Trainer's bf16=True does (--hf-full amp:
  float32 weights and AdamW states, the forward under bf16 autocast; --hf-full bf16: bf16 weights and states);
  Unsloth is not run (bench_unsloth.py trains LoRA / QLoRA only; n/a). MFU counts the weight gradients
  (6·N_matmul). The table gets an `x hsloth-ref` column.

QLoRA (--finetune qlora): hsloth `finetune = qlora` (its NF4 base, LoRA as above); HF / Liger load the base
  through bitsandbytes (4-bit nf4, double quantization, bf16 compute; the wheel from PEERS/wheels) under PEFT's
  LoRA; Unsloth runs bench_unsloth.py with its QLoRA argument (load_in_4bit). --dry-run runs hsloth only (the
  HF side needs a GPU for bitsandbytes) and skips the rows check (an NF4 base has its own loss).

Sides (each in its own process: fresh CUDA context, its own peak memory; out of memory is recorded as OOM):
  hsloth   `hsloth train --config RUN.ini` (INI written next to the run); tokens/s from metrics.jsonl:
           the steps after the warm-up, (elapsed_s[last] - elapsed_s[warm-up]); peak = metrics' peak_mem_bytes
           of the last step (the allocator's peak since the process started: warm-up steps included).
  hsloth-ref  the same hsloth run with HS_KERNELS=0 in its environment: every op its ATen reference (the path
           before the fast path), for before/after in one run.
  hf       transformers + PEFT, SDPA attention, torch AdamW(fused), loss = model(input_ids, labels).loss.
  liger    hf + liger_kernel.transformers.apply_liger_kernel_to_llama() / _qwen3() before the model is made
           (installed from PEERS/wheels into /tmp/site).
  unsloth  bash PEERS/unsloth.sh MODEL SHARDS SHAPE BS CKPT (first call; it installs the wheels into /tmp/site
           and checks `import unsloth`), later calls run the same PEERS/bench_unsloth.py directly on that
           install (--unsloth-install every: unsloth.sh each time; skip: the install is there from an earlier call).

Outputs: a table on stdout, $OUT/train_vs_peers.json (every record, phase timings, GPU, versions, commands),
$OUT/train_vs_peers.md (the table for bench/RESULTS.md), $OUT/logs/ (each side's log).

--dry-run: no GPU needed. Makes a tiny shape (2 layers, hidden 64) and its shards, prints the command of every
side, and runs the hsloth and HF sides on the CPU for 1 + 1 steps (HF in float32 there), then checks that the
step-1 loss of each equals transformers' float32 loss of a group of BS rows of the shards (same tokens, same
targets; the Python sides' first group is rows 0..BS-1). This proves the model writer, prep, the INI, metrics
parsing, the HF worker and the table; a failed check exits 1. Benchmarks are not tests: nothing here asserts a speed.
"""
import argparse
import glob
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SEQ = 2048
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_R, LORA_ALPHA, LR = 16, 32, 1e-4

_LLAMA3_ROPE_1B = dict(rope_type="llama3", rope_theta=500000.0, factor=32.0, low_freq_factor=1.0,
                       high_freq_factor=4.0, original_max_position_embeddings=8192)
_LLAMA3_ROPE_8B = dict(_LLAMA3_ROPE_1B, factor=8.0)
# The published shapes (config.json of meta-llama/Llama-3.2-1B, Qwen/Qwen3-0.6B, meta-llama/Llama-3.1-8B,
# Qwen/Qwen3-8B); the first two as tests/cuda/model_gpu.py has them. tiny-* are for --dry-run.
SHAPES = {
    "llama3.2-1b": dict(model_type="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                        num_attention_heads=32, num_key_value_heads=8, head_dim=64, vocab_size=128256,
                        max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=True,
                        bos_token_id=128000, eos_token_id=128001, rope_parameters=_LLAMA3_ROPE_1B),
    "qwen3-0.6b": dict(model_type="qwen3", hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128, vocab_size=151936,
                       max_position_embeddings=40960, rms_norm_eps=1e-6, tie_word_embeddings=True,
                       bos_token_id=151643, eos_token_id=151645,
                       rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
    "llama3.1-8b": dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                        num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=128256,
                        max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=False,
                        bos_token_id=128000, eos_token_id=128001, rope_parameters=_LLAMA3_ROPE_8B),
    "qwen3-8b": dict(model_type="qwen3", hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=151936,
                     max_position_embeddings=40960, rms_norm_eps=1e-6, tie_word_embeddings=False,
                     bos_token_id=151643, eos_token_id=151645,
                     rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
    "tiny-llama": dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=32000,
                       max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=True,
                       bos_token_id=1, eos_token_id=2, rope_parameters=dict(rope_type="default", rope_theta=10000.0)),
    "tiny-qwen3": dict(model_type="qwen3", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=151936,
                       max_position_embeddings=4096, rms_norm_eps=1e-6, tie_word_embeddings=True,
                       bos_token_id=151643, eos_token_id=151645,
                       rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
}
# Tokenizer of each family from the shared data ($HSLOTH_TESTDATA/tokenizers). There is no Llama-3 tokenizer
# there: the Llama shapes get TinyLlama's (32,000 ids, all < 128,256; its chat template gives zephyr turns, and
# it sets a pad token, so no peer resizes the embeddings). Qwen3 shapes get Qwen3's.
TOKENIZER = {"llama": "tinyllama", "qwen3": "qwen3"}
DEFAULT_BS = {"llama3.2-1b": 8, "qwen3-0.6b": 8, "llama3.1-8b": 4, "qwen3-8b": 4, "tiny-llama": 1, "tiny-qwen3": 1}
CHAT_FILES = ["sharegpt_500.json", "alpaca_tiny.json"]
H100_PEAK_TFLOPS = 790.0  # the peers' basis (bench_unsloth.py) for H100 / H200 SXM bf16 dense


def flops_per_token(c, seq, full=False):
    """MFU basis: 4·N_matmul + 6·L·seq·d_attn per token (forward + input-gradient backward; frozen weights get
    no weight gradient; recomputation not counted). Same function as ../shared/peers/bench_unsloth.py. Full
    fine-tuning (full=True) adds the weight gradients: 6·N_matmul."""
    d, L, f, h = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"], c["num_attention_heads"]
    hd = c.get("head_dim") or d // h
    kv = c["num_key_value_heads"]
    per_layer = d * h * hd + 2 * d * kv * hd + h * hd * d + 3 * d * f
    n_mm = L * per_layer + c["vocab_size"] * d
    return (6 if full else 4) * n_mm + 3 * 2 * L * seq * h * hd


def say(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------------------------------------- model writer

def make_model(shape, out, tokenizer_dir, device, shard_bytes=2 << 30):
    """Random bf16 weights in the published shape, written tensor by tensor (normal(0, std), norms = 1) into
    safetensors files of <= shard_bytes, with an index when there are several; config.json from transformers;
    the tokenizer files copied in. Host memory stays at one file's worth."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = dict(SHAPES[shape])
    cfg = AutoConfig.for_model(spec.pop("model_type"), **spec)
    cfg.dtype = torch.bfloat16
    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(cfg)
    shapes = [(n, tuple(t.shape)) for n, t in meta.state_dict().items()]
    del meta
    if cfg.tie_word_embeddings:
        shapes = [(n, s) for n, s in shapes if n != "lm_head.weight"]
    os.makedirs(out, exist_ok=True)
    g = torch.Generator(device=device).manual_seed(0)
    # 0.02: transformers' initializer_range. The tiny --dry-run shapes get 0.5 so that their losses differ from
    # row to row by more than float rounding (the dry run's rows check tells the rows apart by their loss).
    std = 0.5 if shape.startswith("tiny-") else 0.02
    files, cur, cur_bytes, total = [], {}, 0, 0

    def flush():
        nonlocal cur, cur_bytes
        if cur:
            name = f"part-{len(files):05d}.safetensors"
            save_file(cur, os.path.join(out, name), metadata={"format": "pt"})
            files.append((name, list(cur)))
            cur, cur_bytes = {}, 0

    for n, s in shapes:
        if n.endswith("norm.weight"):
            t = torch.ones(s, dtype=torch.bfloat16)
        else:
            t = (torch.randn(s, generator=g, device=device, dtype=torch.float32) * std).to(torch.bfloat16).cpu()
        nb = t.numel() * 2
        if cur and cur_bytes + nb > shard_bytes:
            flush()
        cur[n] = t
        cur_bytes += nb
        total += nb
    flush()
    if len(files) == 1:
        os.rename(os.path.join(out, files[0][0]), os.path.join(out, "model.safetensors"))
    else:
        k = len(files)
        weight_map = {}
        for i, (name, names) in enumerate(files):
            final = f"model-{i + 1:05d}-of-{k:05d}.safetensors"
            os.rename(os.path.join(out, name), os.path.join(out, final))
            weight_map.update({n: final for n in names})
        with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    cfg.save_pretrained(out)
    for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]:
        if os.path.exists(os.path.join(tokenizer_dir, f)):
            shutil.copyfile(os.path.join(tokenizer_dir, f), os.path.join(out, f))
    return total


# ------------------------------------------------------------------------------------------------------ data

def write_rows_jsonl(tokenizer_json, n_rows, path, seed=0, seq=SEQ):
    """n_rows {"text"} records, each the decoding of seeded random (non-special) token ids, long enough that
    it re-encodes to more than `seq` tokens (prep truncates to exactly `seq`)."""
    import numpy as np
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_json)
    special = set(tok.get_added_tokens_decoder())
    base = tok.get_vocab_size(with_added_tokens=False)
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for _ in range(n_rows):
            ids = []
            while True:
                ids += [int(i) for i in rng.integers(0, base, max(SEQ, seq) // 4) if int(i) not in special]
                text = tok.decode(ids, skip_special_tokens=True)
                if len(ids) >= seq and len(tok.encode(text, add_special_tokens=False).ids) > seq + 16:
                    break
            f.write(json.dumps({"text": text}) + "\n")


def read_samples(folder):
    """(ids, mask) of every sample of a shard folder, in manifest (file) order."""
    import h5py

    m = json.load(open(os.path.join(folder, "manifest.json")))
    out = []
    for sh in m["shards"]:
        with h5py.File(os.path.join(folder, sh["file"]), "r") as h:
            ids, mask, off = h["input_ids"][:], h["loss_mask"][:], h["offsets"][:]
        out += [(ids[off[i]:off[i + 1]], mask[off[i]:off[i + 1]]) for i in range(len(off) - 1)]
    return out


# ------------------------------------------------------------------------------------- HF / Liger worker

def chat_steps(samples, bs, n_steps, seed):
    """Optimizer steps for the padded side in chat mode: samples in a seeded shuffled order (reshuffled each
    epoch), BS x SEQ real tokens per step (the next sample starts a new step when it would not fit); each step
    split, in order, into micro-batches of at most BS x SEQ padded slots (rows x longest)."""
    import numpy as np

    budget = bs * SEQ
    rng = np.random.default_rng(seed)
    steps, cur, tok, epoch = [], [], 0, 0
    while len(steps) < n_steps:
        for i in rng.permutation(len(samples)):
            n = len(samples[i][0])
            if cur and tok + n > budget:
                steps.append(cur)
                cur, tok = [], 0
                if len(steps) == n_steps:
                    break
            cur.append(int(i))
            tok += n
        epoch += 1
    out = []
    for st in steps:
        mbs, mb, longest = [], [], 0
        for i in st:
            n = len(samples[i][0])
            if mb and (len(mb) + 1) * max(longest, n) > budget:
                mbs.append(mb)
                mb, longest = [], 0
            mb.append(i)
            longest = max(longest, n)
        mbs.append(mb)
        out.append(mbs)
    return out, epoch


def worker(a):
    """One HF + PEFT measurement (optionally + Liger; or Unsloth's model in chat mode); prints `TVP_RESULT {json}`."""
    import importlib.metadata as md
    import traceback

    import numpy as np
    import torch

    rec = dict(side=a.side, shape=a.shape, mode=a.mode, ckpt=bool(a.ckpt), bs=a.bs, seq=a.seq, finetune=a.finetune)
    if a.finetune == "qlora" and not torch.cuda.is_available():  # bitsandbytes' NF4 layers need the GPU
        rec["error"] = "n/a: QLoRA (bitsandbytes) needs a CUDA device"
        print("TVP_RESULT " + json.dumps(rec), flush=True)
        return 0
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    if a.side == "unsloth":  # chat mode only: bench_unsloth.py's environment and loading, this loop
        try:  # PEERS/bench_unsloth.py sets its offline environment and imports unsloth (before transformers / peft)
            sys.path.insert(0, a.peers)
            from bench_unsloth import FastLanguageModel
        except Exception as e:  # a broken install is a recorded error, not a missing result line
            traceback.print_exc()
            rec["error"] = f"import unsloth failed: {type(e).__name__}: {str(e)[:300]}"
            print("TVP_RESULT " + json.dumps(rec), flush=True)
            return 1
    if a.side == "liger":
        from liger_kernel.transformers import apply_liger_kernel_to_llama, apply_liger_kernel_to_qwen3

        {"llama": apply_liger_kernel_to_llama, "qwen3": apply_liger_kernel_to_qwen3}[cfg["model_type"]]()
    import transformers
    from peft import LoraConfig, get_peft_model

    if torch.cuda.is_available():
        dev = torch.device("cuda")
    elif a.allow_cpu:
        dev = torch.device("cpu")
    else:
        raise SystemExit("train_vs_peers worker: no CUDA device (pass --dry-run to run on the CPU)")
    warm, timed = a.steps_warmup, a.steps_timed
    model = opt = None
    t_start = time.time()
    try:
        samples = read_samples(a.shards)
        need = warm + timed
        if a.mode == "rows":
            rows = [s[0] for s in samples if len(s[0]) == a.seq]
            if len(rows) < need * a.bs:
                rec["cycled_rows"] = True
            if not rows:
                raise SystemExit(f"no samples of exactly {a.seq} tokens in {a.shards}")
            rows = [rows[i % len(rows)] for i in range(need * a.bs)]
            steps = []
            for k in range(need):
                x = torch.from_numpy(np.stack(rows[k * a.bs:(k + 1) * a.bs]).astype(np.int64))
                steps.append([(x, None, x, 1.0)])
            step_tokens = [a.bs * a.seq] * need
            step_trained = [a.bs * (a.seq - 1)] * need
        else:
            plan, epochs = chat_steps(samples, a.bs, need, seed=a.seed)
            rec["epochs"] = epochs
            steps, step_tokens, step_trained, slots = [], [], [], 0
            for mbs in plan:
                trained = sum(int(samples[i][1].sum()) for mb in mbs for i in mb)
                batch = []
                for mb in mbs:
                    T = max(len(samples[i][0]) for i in mb)
                    ids = torch.full((len(mb), T), a.pad_id, dtype=torch.long)
                    att = torch.zeros((len(mb), T), dtype=torch.long)
                    lab = torch.full((len(mb), T), -100, dtype=torch.long)
                    for r, i in enumerate(mb):
                        s, m = samples[i]
                        ids[r, :len(s)] = torch.from_numpy(s.astype(np.int64))
                        att[r, :len(s)] = 1
                        lab[r, :len(s)] = torch.from_numpy(np.where(m > 0, s, -100).astype(np.int64))
                    n_tr = int((lab[:, 1:] != -100).sum())
                    batch.append((ids, att, lab, n_tr / max(1, trained)))
                    slots += len(mb) * T if len(steps) >= warm else 0
                steps.append(batch)
                step_tokens.append(sum(len(samples[i][0]) for mb in mbs for i in mb))
                step_trained.append(trained)
            rec["padding"] = round(1 - sum(step_tokens[warm:]) / max(1, slots), 4)
            rec["micro_batches_per_step"] = round(sum(len(s) for s in steps[warm:]) / timed, 2)

        torch.manual_seed(0)
        # bf16; float32 only for --dry-run's CPU check (its rows check compares losses with a float32 reference).
        # Full fine-tuning, --hf-full amp (HF Trainer's bf16=True): float32 weights and AdamW states (as hsloth's
        # float32 masters), the forward under bf16 autocast; --hf-full bf16: bf16 weights and AdamW states.
        amp = a.finetune == "full" and a.hf_full == "amp" and not a.fp32
        load_fp32 = a.fp32 or amp
        kw = dict(dtype=torch.float32 if load_fp32 else torch.bfloat16, attn_implementation="sdpa")
        if a.finetune == "qlora":  # QLoRA as its paper / Unsloth load it: NF4, double quantization, bf16 compute
            from transformers import BitsAndBytesConfig
            kw["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.float32 if a.fp32 else torch.bfloat16)
        if a.side == "unsloth":  # exactly as bench_unsloth.py loads it (LoRA / QLoRA, "unsloth" checkpointing)
            gc_mode = "unsloth" if a.ckpt else False
            model, _ = FastLanguageModel.from_pretrained(
                a.model, max_seq_length=a.seq, dtype=torch.bfloat16, load_in_4bit=a.finetune == "qlora",
                use_gradient_checkpointing=gc_mode)
            model = FastLanguageModel.get_peft_model(
                model, r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0, target_modules=TARGETS, bias="none",
                use_gradient_checkpointing=gc_mode, random_state=0)
            try:
                FastLanguageModel.for_training(model)
            except Exception:
                model.train()
        else:
            try:  # straight onto the GPU (device_map needs accelerate)
                model = transformers.AutoModelForCausalLM.from_pretrained(
                    a.model, **kw, **({"device_map": "cuda"} if dev.type == "cuda" else {}))
            except (ImportError, ValueError):
                model = transformers.AutoModelForCausalLM.from_pretrained(a.model, **kw).to(dev)
            model.config.use_cache = False
        if a.ckpt and a.side != "unsloth":
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if a.finetune != "full":
                model.enable_input_require_grads()
        if a.side == "unsloth":
            pass  # FastLanguageModel.get_peft_model above
        elif a.finetune != "full":
            model = get_peft_model(model, LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0,
                                                     target_modules=TARGETS, bias="none", task_type="CAUSAL_LM"))
        else:
            for prm in model.parameters():
                prm.requires_grad_(True)
        model.train()
        rec["hf_full"] = a.hf_full if a.finetune == "full" else None
        params = [p for p in model.parameters() if p.requires_grad]
        rec["trainable"] = sum(p.numel() for p in params)
        opt = torch.optim.AdamW(params, lr=LR, fused=True)
        losses = []

        def step(batch):
            total = 0.0
            for ids, att, lab, w in batch:
                ids, lab = ids.to(dev, non_blocking=True), lab.to(dev, non_blocking=True)
                kw = {} if att is None else {"attention_mask": att.to(dev, non_blocking=True)}
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                    out = model(input_ids=ids, labels=lab, **kw)
                (out.loss * w if w != 1.0 else out.loss).backward()
                total = total + out.loss.detach() * w
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(total)

        def sync():
            if dev.type == "cuda":
                torch.cuda.synchronize()

        for b in steps[:warm]:
            step(b)
        sync()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        for b in steps[warm:]:
            step(b)
        sync()
        dt = time.perf_counter() - t
        rec["timed_s"] = round(dt, 3)
        rec["tok_s"] = round(sum(step_tokens[warm:]) / dt)
        rec["trained_tok_s"] = round(sum(step_trained[warm:]) / dt)
        rec["tokens_per_step"] = round(sum(step_tokens[warm:]) / timed, 1)
        rec["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2) if dev.type == "cuda" else None
        rec["loss_step1"] = float(losses[0])
        rec["loss_first"] = round(float(losses[warm]), 4)
        rec["loss_last"] = round(float(losses[-1]), 4)
    except SystemExit:
        raise
    except Exception as e:
        if isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower():
            rec["error"] = "OOM"
        else:
            traceback.print_exc()
            rec["error"] = f"{type(e).__name__}: {str(e)[:300]}"
    rec["secs"] = round(time.time() - t_start, 1)
    def ver(name):
        try:
            return md.version(name)
        except Exception:
            return "?"
    vers = [f"torch {torch.__version__}", f"transformers {transformers.__version__}", f"peft {ver('peft')}"]
    if a.side == "liger":
        vers.append(f"liger_kernel {ver('liger_kernel')}")
    if a.side == "unsloth":
        vers.append(f"unsloth {ver('unsloth')} zoo {ver('unsloth_zoo')}")
    rec["versions"] = " ".join(vers)
    print("TVP_RESULT " + json.dumps(rec), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------------- driver

class Bench:
    def __init__(self, a):
        self.a = a
        self.out = os.path.abspath(a.out)
        self.work = os.path.abspath(a.work)
        self.logs = os.path.join(self.out, "logs")
        os.makedirs(self.logs, exist_ok=True)
        os.makedirs(self.work, exist_ok=True)
        self.phases = []
        self.records = []
        self.shard_cache = {}
        self.unsloth_installed = a.unsloth_install == "skip"
        self.liger_ready = a.unsloth_install == "skip"
        self.failed = False
        self.t0 = time.time()

    def phase(self, name, secs):
        self.phases.append({"phase": name, "secs": round(secs, 1)})
        say(f"  [{name}: {secs:.1f}s; {time.time() - self.t0:.0f}s so far]")

    def run(self, cmd, log, env=None, timeout=None):
        """Runs cmd with stdout+stderr into log; returns (rc, text)."""
        e = dict(os.environ)
        e.update(env or {})
        with open(log, "w") as f:
            f.write("$ " + " ".join(map(str, cmd)) + "\n")
            f.flush()
            # its own process group, so that a timeout also ends what it started (unsloth.sh's python)
            proc = subprocess.Popen(list(map(str, cmd)), stdout=f, stderr=subprocess.STDOUT, env=e,
                                    start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout or self.a.timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                f.write(f"\ntrain_vs_peers: killed after {timeout or self.a.timeout}s (--timeout)\n")
                rc = 124
        return rc, open(log, errors="replace").read()

    # -- inputs
    def tokenizer_dir(self, shape):
        d = os.path.join(self.a.testdata, "tokenizers", TOKENIZER[SHAPES[shape]["model_type"]])
        if not os.path.exists(os.path.join(d, "tokenizer.json")):
            raise SystemExit(f"no tokenizer.json in {d}\n  HINT: pass --testdata (or set $HSLOTH_TESTDATA) to "
                             "the folder holding tokenizers/ and datasets/ (the checkout's testdata/)")
        return d

    def make(self, shape):
        d = os.path.join(self.work, f"model-{shape}")
        if os.path.exists(os.path.join(d, "config.json")) and self.a.reuse:
            say(f"  model {d} (reused)")
            return d
        shutil.rmtree(d, ignore_errors=True)
        t = time.time()
        rc, text = self.run([sys.executable, __file__, "_make", "--shape", shape, "--dir", d, "--tokenizer",
                             self.tokenizer_dir(shape), "--device", "cpu" if self.a.dry_run else "cuda"],
                            os.path.join(self.logs, f"make-{shape}.log"), timeout=900)
        if rc != 0:
            raise SystemExit(f"writing the {shape} model failed (rc {rc}):\n{text[-3000:]}")
        self.phase(f"write {shape} model", time.time() - t)
        return d

    def shards(self, shape, model_dir, bs, seq=SEQ):
        family = TOKENIZER[SHAPES[shape]["model_type"]]
        n_rows = (self.a.steps_warmup + self.a.steps_timed) * bs
        key = (family, self.a.mode, n_rows if self.a.mode == "rows" else 0, seq)
        if key in self.shard_cache:
            return self.shard_cache[key]
        rows_tag = f"-{n_rows}" + (f"x{seq}" if seq != SEQ else "")
        d = os.path.join(self.work, f"shards-{self.a.mode}-{family}" + (rows_tag if self.a.mode == "rows" else ""))
        t = time.time()
        shutil.rmtree(d, ignore_errors=True)
        if self.a.mode == "rows":
            src = os.path.join(self.work, f"rows-{family}{rows_tag}.jsonl")
            write_rows_jsonl(os.path.join(model_dir, "tokenizer.json"), n_rows, src, seq=seq)
            cmd = [self.a.hsloth, "prep", "--input", src, "--tokenizer", model_dir, "--out", d, "--format", "text",
                   "--max-len", seq, "--too-long", "truncate"]
        else:
            files = [os.path.join(self.a.testdata, "datasets", f) for f in CHAT_FILES]
            for f in files:
                if not os.path.exists(f):
                    raise SystemExit(f"chat data missing: {f}\n  HINT: pass --testdata (or $HSLOTH_TESTDATA)")
            cmd = [self.a.hsloth, "prep", "--input", ",".join(files), "--tokenizer", model_dir, "--out", d,
                   "--loss", "response", "--max-len", SEQ, "--too-long", "truncate"]
        rc, text = self.run(cmd, os.path.join(self.logs, f"prep-{self.a.mode}-{family}.log"), timeout=900)
        if rc != 0:
            raise SystemExit(f"hsloth prep failed (rc {rc}):\n{text[-3000:]}")
        samples = read_samples(d)
        lens = [len(s[0]) for s in samples]
        if self.a.mode == "rows" and (len(samples) != n_rows or any(n != seq for n in lens)):
            raise SystemExit(f"{d}: expected {n_rows} rows of {seq} tokens, got {len(samples)} samples of "
                             f"lengths {sorted(set(lens))}")
        info = {"dir": d, "samples": len(samples), "tokens": sum(lens),
                "trained": int(sum(int(s[1].sum()) for s in samples)),
                # token-weighted mean sample length: the attention term's `seq` in the MFU basis
                "seq_eff": sum(n * n for n in lens) / max(1, sum(lens)), "cmd": " ".join(map(str, cmd))}
        self.phase(f"prep {self.a.mode} {family} ({info['samples']} samples, {info['tokens']} tokens)", time.time() - t)
        self.shard_cache[key] = info
        return info

    # -- sides
    def side_hsloth(self, shape, model_dir, shards, bs, ckpt, tag, seq=SEQ, gc=None, side="hsloth"):
        """hsloth train; side "hsloth-ref" is the same run with HS_KERNELS=0 (every op its ATen reference: the
        path before the fast path), for before/after in one run."""
        a = self.a
        run_dir = os.path.join(self.work, f"run-{tag}")
        shutil.rmtree(run_dir, ignore_errors=True)
        os.makedirs(run_dir)
        ini = os.path.join(self.work, f"{tag}.ini")
        gc = gc or ("on" if ckpt else "off")
        lora = (f"[lora]\nr = {LORA_R}\nalpha = {LORA_ALPHA}\ndropout = 0\n"
                f"targets = {' '.join(TARGETS)}\n\n") if a.finetune != "full" else ""
        with open(ini, "w") as f:
            f.write(f"# {a.hsloth} train --config {ini}\n"
                    f"# written by bench/train_vs_peers.py: {shape}, {a.mode}, {bs} x {seq} tokens per step\n"
                    f"finetune = {a.finetune}\n\n"
                    f"[model]\npath = {model_dir}\ndtype = {'auto' if a.dry_run else 'bf16'}\n\n"
                    f"[data]\ntrain = {shards['dir']}\n\n"
                    f"[run]\ndir = {run_dir}\n\n" + lora +
                    # torch.optim.AdamW's defaults (weight decay 0.01), no clipping, constant lr: bench_unsloth.py's
                    f"[train]\nlr = {LR}\nschedule = constant\nwarmup_steps = 0\n"
                    f"max_steps = {a.steps_warmup + a.steps_timed}\ntokens_per_batch = {bs * seq}\ngrad_accum = 1\n"
                    f"weight_decay = 0.01\nmax_grad_norm = 0\nseed = 0\npacking = packed\ngrad_ckpt = {gc}\n\n"
                    "[log]\nevery = 1\n")
        cmd = [a.hsloth, "train", "--config", ini]
        env = {"HS_KERNELS": "0"} if side == "hsloth-ref" else None
        rec = dict(side=side, shape=shape, mode=a.mode, ckpt=bool(ckpt), bs=bs, seq=seq, finetune=a.finetune,
                   cmd=("HS_KERNELS=0 " if env else "") + " ".join(cmd), hsloth_grad_ckpt=gc)
        t = time.time()
        rc, text = self.run(cmd, os.path.join(self.logs, f"{tag}.log"), env)
        rec["secs"] = round(time.time() - t, 1)
        if rc != 0:
            oom = "out of GPU memory" in text or "out of memory" in text.lower()
            rec["error"] = "OOM" if oom else f"timeout ({a.timeout}s)" if rc == 124 else f"rc {rc}: " + " | ".join(
                [ln for ln in text.splitlines() if ln.startswith(("error", "  hint"))][:2] or text.splitlines()[-2:])
            return rec
        ms = [json.loads(x) for x in open(os.path.join(run_dir, "metrics.jsonl")) if x.strip()]
        ms = [m for m in ms if "loss" in m]
        w = a.steps_warmup
        if len(ms) != w + a.steps_timed or [m["step"] for m in ms] != list(range(1, len(ms) + 1)):
            rec["error"] = f"metrics.jsonl has steps {[m['step'] for m in ms]}, expected 1..{w + a.steps_timed}"
            return rec
        dt = ms[-1]["elapsed_s"] - (ms[w - 1]["elapsed_s"] if w > 0 else 0.0)
        timed = ms[w:]
        rec["timed_s"] = round(dt, 3)
        rec["tok_s"] = round(sum(m["tokens"] for m in timed) / dt)
        rec["trained_tok_s"] = round(sum(m["trained_tokens"] for m in timed) / dt)
        rec["tokens_per_step"] = round(sum(m["tokens"] for m in timed) / len(timed), 1)
        rec["peak_gib"] = round(ms[-1]["peak_mem_bytes"] / 2**30, 2) if not a.dry_run else None
        rec["loss_first"], rec["loss_last"] = round(timed[0]["loss"], 4), round(ms[-1]["loss"], 4)
        rec["loss_step1"] = ms[0]["loss"]
        if "mfu" in ms[-1]:
            rec["hsloth_reported_mfu"] = round(ms[-1]["mfu"], 4)
        rec["versions"] = self.hsloth_version
        shutil.rmtree(os.path.join(run_dir, "checkpoints"), ignore_errors=True)
        return rec

    def side_python(self, side, shape, model_dir, shards, bs, ckpt, tag, seq=SEQ):
        a = self.a
        env = {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "PYTHONUNBUFFERED": "1"}
        if a.finetune == "qlora" and not a.dry_run:
            self.install_wheels()  # bitsandbytes (and liger_kernel) from PEERS/wheels
        elif side == "liger":
            self.install_liger()
        if side in ("liger", "unsloth") or (a.finetune == "qlora" and not a.dry_run):
            env["PYTHONPATH"] = a.site + (":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
        pad = json.load(open(os.path.join(model_dir, "config.json"))).get("eos_token_id", 0)
        cmd = [sys.executable, __file__, "_worker", "--side", side, "--shape", shape, "--model", model_dir,
               "--shards", shards["dir"], "--bs", bs, "--ckpt", int(ckpt), "--mode", a.mode,
               "--steps-warmup", a.steps_warmup, "--steps-timed", a.steps_timed, "--pad-id",
               pad if isinstance(pad, int) else pad[0], "--seq", seq, "--finetune", a.finetune,
               "--hf-full", a.hf_full] + (["--peers", a.peers] if side == "unsloth" else [])
        if a.dry_run:
            cmd += ["--allow-cpu", "--fp32"]
        return self.parse_json_side(side, shape, bs, ckpt, cmd, env, tag, "TVP_RESULT ", seq)

    def install_liger(self):
        if self.liger_ready:
            return
        whl = glob.glob(os.path.join(self.a.peers, "wheels", "liger_kernel-*.whl"))
        if not whl:
            raise SystemExit(f"no liger_kernel wheel in {self.a.peers}/wheels\n  HINT: carry the peers folder "
                             "(cp -r ../shared/peers .peers) and pass --peers .peers")
        t = time.time()
        rc, text = self.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                             "--upgrade", "--target", self.a.site, *whl], os.path.join(self.logs, "install-liger.log"))
        if rc != 0:
            raise SystemExit(f"installing {whl} into {self.a.site} failed:\n{text[-2000:]}")
        self.liger_ready = True
        self.phase("install liger_kernel", time.time() - t)

    def side_unsloth(self, shape, model_dir, shards, bs, ckpt, tag, seq=SEQ):
        a = self.a
        if a.finetune == "full":
            return dict(side="unsloth", shape=shape, mode=a.mode, ckpt=bool(ckpt), bs=bs, seq=seq,
                        finetune=a.finetune, error="n/a: bench_unsloth.py trains LoRA / QLoRA only")
        if a.mode == "chat":
            # bench_unsloth.py reads 2048-token rows only: the HF worker's padded chat loop on a model loaded
            # as bench_unsloth.py loads it, on the wheels' install.
            self.install_wheels()
            return self.side_python("unsloth", shape, model_dir, shards, bs, ckpt, tag, seq)
        args = [model_dir, shards["dir"], shape, bs, int(ckpt)] + ([1] if a.finetune == "qlora" else [])
        env = {"OUT": os.path.join(self.out, "unsloth")}
        if seq != SEQ or a.seq_sweep:
            # bench_unsloth.py reads its row length and step counts from module globals (SEQ, WARMUP, TIMED):
            # the same script, imported with those set (`_unsloth` below), on the wheels' install.
            self.install_wheels()
            cmd = [sys.executable, __file__, "_unsloth", "--peers", a.peers, "--seq", seq, "--warmup",
                   a.steps_warmup, "--timed", a.steps_timed, "--", *args]
            env["PYTHONPATH"] = a.site + (":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
            env["PYTHONUNBUFFERED"] = "1"
            return self.parse_json_side("unsloth", shape, bs, ckpt, cmd, env, tag, "{", seq)
        if a.unsloth_install == "every" or not self.unsloth_installed:
            cmd = ["bash", os.path.join(a.peers, "unsloth.sh"), *args]
        else:  # the same script on the install unsloth.sh made, without re-installing and re-checking the import
            cmd = [sys.executable, os.path.join(a.peers, "bench_unsloth.py"), *args]
            env["PYTHONPATH"] = a.site + (":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
            env["PYTHONUNBUFFERED"] = "1"
        rec = self.parse_json_side("unsloth", shape, bs, ckpt, cmd, env, tag, "{")
        if "error" not in rec or rec["error"] == "OOM":
            self.unsloth_installed = True
            self.liger_ready = True  # unsloth.sh installs every wheel, Liger's included
        return rec

    def install_wheels(self):
        """Every wheel of PEERS/wheels into --site, as unsloth.sh installs them (once per run)."""
        if self.unsloth_installed:
            return
        whl = glob.glob(os.path.join(self.a.peers, "wheels", "*.whl"))
        if not whl:
            raise SystemExit(f"no wheels in {self.a.peers}/wheels\n  HINT: carry the peers folder "
                             "(cp -r ../shared/peers .peers) and pass --peers .peers")
        t = time.time()
        rc, text = self.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                             "--no-cache-dir", "--upgrade", "--target", self.a.site, *whl],
                            os.path.join(self.logs, "install-wheels.log"))
        if rc != 0:
            raise SystemExit(f"installing {self.a.peers}/wheels into {self.a.site} failed:\n{text[-2000:]}")
        self.unsloth_installed = self.liger_ready = True
        self.phase("install peer wheels", time.time() - t)

    def parse_json_side(self, side, shape, bs, ckpt, cmd, env, tag, prefix, seq=SEQ):
        t = time.time()
        rc, text = self.run(cmd, os.path.join(self.logs, f"{tag}.log"), env)
        rec = None
        for ln in reversed(text.splitlines()):
            if ln.startswith(prefix):
                try:
                    j = json.loads(ln[len(prefix):] if prefix != "{" else ln)
                except ValueError:
                    continue
                if isinstance(j, dict) and "side" in j:
                    rec = j
                    break
        if rec is None:
            oom = "out of memory" in text.lower()
            tail = [ln for ln in text.splitlines() if ln.strip()][-3:]
            rec = dict(side=side, shape=shape, bs=bs, ckpt=bool(ckpt),
                       error="OOM" if oom else f"timeout ({self.a.timeout}s)" if rc == 124 else
                       f"rc {rc}, no result line: " + " | ".join(tail)[-400:])
        rec.update(side=side, shape=shape, mode=self.a.mode, cmd=" ".join(map(str, cmd)), seq=seq,
                   finetune=self.a.finetune, wall_s=round(time.time() - t, 1))
        return rec

    # -- one shape
    def shape(self, shape):
        a = self.a
        say(f"== {shape}")
        model_dir = self.make(shape)
        cfg = json.load(open(os.path.join(model_dir, "config.json")))
        # --seq-sweep: one sample of each length per micro-batch (--bs to change); else rows of SEQ
        for seq in a.seq_sweep or [SEQ]:
            bs = a.bs or (1 if a.seq_sweep else DEFAULT_BS[shape])
            if a.seq_sweep:
                say(f"  -- {bs} x {seq} tokens")
            shards = self.shards(shape, model_dir, bs, seq)
            seq_mfu = seq if a.mode == "rows" else shards["seq_eff"]
            fpt = flops_per_token(cfg, seq_mfu, full=a.finetune == "full")
            for ckpt in a.ckpt:
                runs = []  # (side, hsloth grad_ckpt)
                for side in a.sides:
                    if side.startswith("hsloth"):
                        runs += [(side, gc) for gc in (a.hsloth_ckpt if ckpt else ["off"])]
                    else:
                        runs.append((side, None))
                for side, gc in runs:
                    tag = (f"{shape}-{a.mode}" + (f"-{seq}" if seq != SEQ else "") + f"-{a.finetune}-ckpt{int(ckpt)}-"
                           f"{side}" + (f"-{gc}" if gc and gc not in ("on", "off") else ""))
                    # the dry run's CPU has no Liger / Unsloth install, and bitsandbytes' NF4 layers need a GPU
                    if a.dry_run and (side in ("liger", "unsloth") or (side == "hf" and a.finetune == "qlora")):
                        say(f"  {side:8s} would run: " + self.dry_cmd(side, shape, model_dir, shards, bs, ckpt, seq))
                        continue
                    t = time.time()
                    if side.startswith("hsloth"):
                        rec = self.side_hsloth(shape, model_dir, shards, bs, ckpt, tag, seq, gc, side)
                    elif side in ("hf", "liger"):
                        rec = self.side_python(side, shape, model_dir, shards, bs, ckpt, tag, seq)
                    else:
                        rec = self.side_unsloth(shape, model_dir, shards, bs, ckpt, tag, seq)
                    rec["flops_per_token"] = fpt
                    rec["seq_for_mfu"] = round(seq_mfu, 1)
                    if rec.get("tok_s") and self.peak:
                        rec["mfu_basis"] = round(rec["tok_s"] * fpt / (self.peak * 1e12), 4)
                    self.records.append(rec)
                    self.report(show=False)
                    self.phase(f"{tag}: " + (rec.get("error") or f"{rec['tok_s']:,} tok/s, peak "
                                             f"{rec.get('peak_gib')} GiB"), time.time() - t)
                    if a.dry_run:
                        say(f"  {side:8s} ran: {rec.get('cmd')}")
                        if rec.get("error"):
                            self.failed = True  # the dry run proves the sides run: any failure fails it
            if a.dry_run and a.mode == "rows" and any(s.startswith("hsloth") for s in a.sides):
                if a.finetune == "qlora":  # an NF4 base has its own loss: not transformers' float32 one
                    say("  rows check: skipped for QLoRA (the NF4 base's loss differs from the float32 model's)")
                else:
                    self.check_rows(shape, model_dir, shards, bs, seq)
        if not a.keep:
            shutil.rmtree(model_dir, ignore_errors=True)

    def check_rows(self, shape, model_dir, shards, bs, seq=SEQ):
        """--dry-run: hsloth's step-1 loss (LoRA B = 0: the base model's) equals transformers' float32 loss of one
        group of BS consecutive rows of the shards (the groups the Python sides train as batches): the same
        tokens, the same targets. Fails the dry run otherwise."""
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        rows = [torch.from_numpy(s[0].astype("int64")) for s in read_samples(shards["dir"])]
        ref = []
        with torch.no_grad():
            for k in range(0, len(rows), bs):
                x = torch.stack(rows[k:k + bs])
                ref.append(m(input_ids=x, labels=x).loss.item())
        for r in self.records:
            if r["shape"] != shape or "loss_step1" not in r or r.get("seq", SEQ) != seq:
                continue
            k = min(range(len(ref)), key=lambda i: abs(ref[i] - r["loss_step1"]))
            diff = abs(ref[k] - r["loss_step1"])
            # it must match its group far better than the groups differ from each other
            gap = min([abs(x - y) for i, x in enumerate(ref) for y in ref[i + 1:]] or [1.0])
            # the Python sides start at rows 0..BS-1; hsloth takes its groups in its shuffled order
            ok = diff < 0.1 * gap and (r["side"].startswith("hsloth") or k == 0)
            say(f"  rows check: {r['side']} step-1 loss {r['loss_step1']:.6f} = transformers float32 loss of rows "
                f"{k * bs}..{k * bs + bs - 1}: {ref[k]:.6f} (diff {diff:.1e}; groups of rows differ by >= {gap:.1e}): "
                f"{'ok' if ok else 'FAIL'}")
            if not ok:
                self.failed = True

    def dry_cmd(self, side, shape, model_dir, shards, bs, ckpt, seq=SEQ):
        p = self.a.peers
        if side == "unsloth" and self.a.finetune == "full":
            return "nothing (bench_unsloth.py trains LoRA / QLoRA only)"
        if side == "unsloth" and self.a.mode == "rows":
            q = " 1" if self.a.finetune == "qlora" else ""
            if seq != SEQ or self.a.seq_sweep:
                return (f"PYTHONPATH={self.a.site} {sys.executable} {__file__} _unsloth --peers {p} --seq {seq} "
                        f"--warmup {self.a.steps_warmup} --timed {self.a.steps_timed} -- {model_dir} {shards['dir']} "
                        f"{shape} {bs} {int(ckpt)}{q} (after pip install --target {self.a.site} {p}/wheels/*.whl)")
            return f"bash {p}/unsloth.sh {model_dir} {shards['dir']} {shape} {bs} {int(ckpt)}{q}"
        every = self.a.finetune == "qlora" or side == "unsloth"  # chat-mode Unsloth: the worker on every wheel
        return (f"PYTHONPATH={self.a.site} {sys.executable} {__file__} _worker --side {side} --shape {shape} "
                f"--model {model_dir} --shards {shards['dir']} --bs {bs} --ckpt {int(ckpt)} --mode {self.a.mode} "
                f"--seq {seq} --finetune {self.a.finetune} --hf-full {self.a.hf_full} "
                + (f"--peers {p} " if side == "unsloth" else "") +
                f"(after pip install --target {self.a.site} {p}/wheels/"
                + ("*.whl)" if every else "liger_kernel-*.whl)"))

    def gpu(self):
        code = ("import json, torch\n"
                "if not torch.cuda.is_available(): print(json.dumps({'name': 'cpu'})); raise SystemExit\n"
                "p = torch.cuda.get_device_properties(0)\n"
                "print(json.dumps({'name': p.name, 'memory_gib': round(p.total_memory / 2**30, 1), "
                "'sms': p.multi_processor_count, 'cc': f'{p.major}.{p.minor}', 'torch': torch.__version__, "
                "'cuda': torch.version.cuda}))\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        try:
            return json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"name": "unknown", "error": r.stderr[-300:]}

    def main(self):
        a = self.a
        self.gpu_info = self.gpu()
        v = subprocess.run([a.hsloth, "--version"], capture_output=True, text=True).stdout.strip()
        # --dirty: a binary built from uncommitted changes says so (session 7's records, made before this, name
        # the commit their tree started from)
        g = subprocess.run(["git", "-C", HERE, "describe", "--always", "--dirty"], capture_output=True, text=True)
        self.hsloth_version = v + (f" (checkout {g.stdout.strip()})" if g.returncode == 0 else "")
        name = self.gpu_info.get("name", "")
        if a.peak_tflops:
            self.peak = a.peak_tflops
        elif "H100" in name or "H200" in name:
            self.peak = H100_PEAK_TFLOPS
        else:
            self.peak = None
        say(f"GPU: {name} {self.gpu_info}; MFU peak: {self.peak or '-'} TFLOP/s")
        if name == "cpu" and not a.dry_run:
            raise SystemExit("no CUDA device visible to torch: this is a GPU benchmark (use --dry-run to check "
                             "the script on a CPU)")
        for shape in a.shapes:
            self.shape(shape)
        self.report()

    # -- table
    def report(self, show=True):
        """Writes train_vs_peers.json and .md (after every side, so a run cut short keeps what it measured);
        prints the table when `show`."""
        a = self.a
        recs = self.records
        by = {}
        for r in recs:
            by[(r["shape"], r.get("seq", SEQ), r["ckpt"], r["side"])] = r
        head = ["shape", "batch", "ckpt", "side", "tokens/s"]
        if a.mode == "chat":
            head += ["trained tok/s", "tokens/step", "padding"]
        head += ["MFU", "peak GiB", "x HF", "x Unsloth", "mem / Unsloth"]
        if a.finetune == "full":
            head += ["x hsloth-ref"]
        rows = []
        for r in recs:
            key = (r["shape"], r.get("seq", SEQ), r["ckpt"])
            hf, us, ref = by.get(key + ("hf",), {}), by.get(key + ("unsloth",), {}), by.get(key + ("hsloth-ref",), {})

            def ratio(x, y, digits=2):
                return f"{x / y:.{digits}f}" if x and y else "-"
            ck = ("on" if r["side"] in ("hf", "liger") else
                  "unsloth" if r["side"] == "unsloth" else r.get("hsloth_grad_ckpt", "on")) if r["ckpt"] else "off"
            seq = r.get("seq", SEQ)
            row = [r["shape"], f"{r['bs']} x {seq}" if a.mode == "rows" else f"{r['bs'] * seq} tok", ck, r["side"]]
            if r.get("error"):
                row += [r["error"] if len(r["error"]) < 60 else r["error"][:57] + "..."]
                row += [""] * (len(head) - len(row))
            else:
                row += [f"{r['tok_s']:,}"]
                if a.mode == "chat":
                    row += [f"{r['trained_tok_s']:,}", f"{r['tokens_per_step']:,.0f}",
                            f"{r['padding']:.1%}" if "padding" in r else "0 (packed)"]
                row += [f"{r['mfu_basis']:.1%}" if r.get("mfu_basis") else "-",
                        f"{r['peak_gib']:.1f}" if r.get("peak_gib") is not None else "-",
                        ratio(r.get("tok_s"), hf.get("tok_s")), ratio(r.get("tok_s"), us.get("tok_s")),
                        ratio(r.get("peak_gib"), us.get("peak_gib"))]
                if a.finetune == "full":
                    row += [ratio(r.get("tok_s"), ref.get("tok_s"))]
            rows.append(row)
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        if show:
            say("")
            say("  ".join(h.ljust(w) for h, w in zip(head, widths)))
            for row in rows:
                say("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
        gpu = self.gpu_info.get("name", "?")
        fpts = {}
        for r in recs:
            fpts[(r["shape"], r["seq_for_mfu"])] = r["flops_per_token"]
        what = ({"lora": "", "qlora": "QLoRA (NF4 base): "}[a.finetune] +
                f"LoRA r={LORA_R} alpha={LORA_ALPHA} dropout 0 on {', '.join(TARGETS)}" if a.finetune != "full" else
                "full fine-tuning (every weight trained)")
        notes = [
            f"GPU: {gpu} ({self.gpu_info.get('memory_gib', '?')} GiB); mode {a.mode}"
            + (f", sequence sweep {', '.join(map(str, a.seq_sweep))} tokens" if a.seq_sweep else "") + "; "
            f"{a.steps_warmup} warm-up + {a.steps_timed} timed steps; {what}; AdamW lr {LR}; bf16.",
            "tokens/s = real (unpadded) tokens of the timed steps / their wall time. peak = CUDA caching allocator's "
            "peak allocated (hsloth: since its start, warm-up included; the others: reset after the warm-up).",
            f"MFU = tokens/s x ({6 if a.finetune == 'full' else 4}*N_matmul + 6*L*seq*d_attn) / "
            + (f"{self.peak:g} TFLOP/s" if self.peak else "(no peak: pass --peak-tflops)")
            + " (forward + input-gradient backward; frozen weights get no weight gradient; recomputation not counted; "
            "the basis of bench_unsloth.py" + (", seq = the data's token-weighted mean sample length" if a.mode == "chat" else "") + "):",
        ]
        if a.finetune == "full":
            notes[-1] = notes[-1].replace("frozen weights get no weight gradient", "full fine-tuning: weight "
                                          "gradients counted (6*N_matmul)")
        notes += [f"  {s}: {f / 1e9:.3f} GFLOP/token (seq {q:g})" for (s, q), f in fpts.items()]
        if a.mode == "chat":
            notes.append("chat: hsloth packs (train.tokens_per_batch = batch); HF and Liger pad per micro-batch "
                         "(padding = padded slots that hold no token); Unsloth: the same padded loop on its FastLanguageModel "
                         "(bench_unsloth.py's loading).")
        if a.finetune == "full":
            notes.append("full fine-tuning: hsloth keeps float32 master weights, bf16 weights in the model; HF "
                         + ("(--hf-full amp, HF Trainer's bf16=True): float32 weights and AdamW states, forward "
                            "under bf16 autocast" if a.hf_full == "amp" else
                            "(--hf-full bf16): bf16 weights and AdamW states")
                         + "; Unsloth not run (bench_unsloth.py trains LoRA / QLoRA only); hsloth-ref = hsloth with "
                           "HS_KERNELS=0 (every op its ATen reference).")
        elif a.finetune == "qlora":
            notes.append("QLoRA: hsloth finetune = qlora (its NF4 base); HF / Liger: bitsandbytes 4-bit (nf4, double "
                         "quantization, bf16 compute) + PEFT; Unsloth: bench_unsloth.py's QLoRA (load_in_4bit).")
        if a.finetune != "full" and any(r["side"] == "hsloth-ref" for r in recs):
            notes.append("hsloth-ref = hsloth with HS_KERNELS=0 (every op its ATen reference).")
        if a.seq_sweep:
            notes.append("sequence sweep: each micro-batch (= step) is one sample of `seq` tokens (x --bs); hsloth "
                         "with train.grad_ckpt as the ckpt column says (offload: layer inputs in pinned host memory); "
                         "OOM = that side ran out of GPU memory at that length.")
        notes.append("x HF, x Unsloth: tokens/s ratios to that side's in this run; mem / Unsloth: peak ratio.")
        vers = {"hsloth": self.hsloth_version}
        for r in recs:
            if r.get("versions") and not r["side"].startswith("hsloth"):
                vers.setdefault(r["side"], r["versions"])
        notes.append("versions: " + "; ".join(f"{k}: {v}" for k, v in vers.items()))
        if show:
            for n in notes:
                say(n)
        md = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        md += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
        md += [""] + [("  - " + n.strip()) if n.startswith("  ") else "- " + n.replace("*", "·") for n in notes]
        cmdline = "python3 " + " ".join([os.path.relpath(__file__)] + sys.argv[1:])
        md += ["", f"Command: `{cmdline}`"]
        with open(os.path.join(self.out, "train_vs_peers.md"), "w") as f:
            f.write("\n".join(md) + "\n")
        phases = self.phases
        if show:
            say("phases: " + ", ".join(f"{p['phase'].split(':')[0]} {p['secs']}s" for p in phases))
            say(f"total {time.time() - self.t0:.0f}s; wrote {self.out}/train_vs_peers.json and train_vs_peers.md")
        with open(os.path.join(self.out, "train_vs_peers.json"), "w") as f:
            json.dump({"gpu": self.gpu_info, "hsloth": self.hsloth_version, "peak_tflops": self.peak, "mode": a.mode,
                       "finetune": a.finetune, "seq_sweep": a.seq_sweep, "command": cmdline,
                       "steps_warmup": a.steps_warmup, "steps_timed": a.steps_timed, "records": recs,
                       "shards": list(self.shard_cache.values()), "phases": phases,
                       "total_s": round(time.time() - self.t0, 1)}, f, indent=1)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--hsloth", default="build/hsloth", help="the hsloth binary (a CUDA build on the GPU)")
    p.add_argument("--shapes", default="llama3.2-1b,qwen3-0.6b", help=f"comma list of {', '.join(SHAPES)}")
    p.add_argument("--sides", default="hsloth,hf,liger,unsloth",
                   help="comma list of hsloth, hsloth-ref (hsloth with HS_KERNELS=0), hf, liger, unsloth")
    p.add_argument("--ckpt", action="append", help="0 | 1 | 0,1 (repeatable): gradient checkpointing off / on")
    p.add_argument("--hsloth-ckpt", default="on",
                   help="hsloth's train.grad_ckpt when --ckpt 1: on, offload or on,offload (one hsloth run each)")
    p.add_argument("--mode", default="rows", choices=["rows", "chat"])
    p.add_argument("--seq-sweep", default="",
                   help="rows mode: comma list of row lengths (e.g. 2048,8192,32768); each side trains one sample of "
                        "each length per step (--bs to change) and the table gets a row per length")
    p.add_argument("--finetune", default="lora", choices=["lora", "qlora", "full"],
                   help="qlora: hsloth finetune = qlora, HF / Liger bitsandbytes NF4 + PEFT, Unsloth load_in_4bit; "
                        "full: hsloth finetune = full, HF / Liger train every weight (see --hf-full); no Unsloth")
    p.add_argument("--hf-full", default="amp", choices=["amp", "bf16"],
                   help="HF full fine-tuning: amp = float32 weights + AdamW states, bf16 autocast (HF Trainer's "
                        "bf16=True; hsloth keeps float32 masters too); bf16 = bf16 weights and states")
    p.add_argument("--bs", type=int, default=0, help="rows of 2048 per step (0: 8 for the 1B shapes, 4 for 8B)")
    p.add_argument("--steps-warmup", type=int, default=3)
    p.add_argument("--steps-timed", type=int, default=11)
    p.add_argument("--out", default=os.environ.get("OUT", "/tmp/out"))
    p.add_argument("--work", default="/tmp/hs-train-vs-peers", help="model folders, shards, runs (big for 8B)")
    p.add_argument("--peers", default=".peers", help="a copy of ../shared/peers (unsloth.sh, bench_unsloth.py, wheels/)")
    p.add_argument("--site", default="/tmp/site", help="where the peer wheels are installed (unsloth.sh's choice)")
    p.add_argument("--unsloth-install", default="once", choices=["once", "every", "skip"],
                   help="once: unsloth.sh on the first Unsloth side, then bench_unsloth.py on its install; every: "
                        "unsloth.sh each time; skip: --site already holds the wheels (an earlier call on this machine)")
    p.add_argument("--testdata", default=os.environ.get("HSLOTH_TESTDATA") or os.path.join(HERE, "..", "testdata"))
    p.add_argument("--peak-tflops", type=float, default=0, help=f"MFU peak (default {H100_PEAK_TFLOPS:g} on H100/H200)")
    p.add_argument("--timeout", type=int, default=540, help="seconds per side")
    p.add_argument("--keep", action="store_true", help="keep the model folders")
    p.add_argument("--reuse", action="store_true", help="reuse model folders already in --work")
    p.add_argument("--dry-run", action="store_true",
                   help="CPU check: tiny shape, hsloth + HF sides on the CPU for 1 + 1 steps, peer commands printed")
    a = p.parse_args(argv)
    a.shapes = [s for s in a.shapes.split(",") if s]
    a.sides = [s for s in a.sides.split(",") if s]
    a.ckpt = [c in ("1", "on", "true") for c in ",".join(a.ckpt or ["0"]).split(",") if c]
    a.hsloth_ckpt = [c for c in a.hsloth_ckpt.split(",") if c]
    for c in a.hsloth_ckpt:
        if c not in ("on", "offload"):
            p.error(f"--hsloth-ckpt: {c} is not on or offload")
    try:
        a.seq_sweep = [int(x) for x in a.seq_sweep.split(",") if x.strip()]
    except ValueError:
        p.error(f"--seq-sweep {a.seq_sweep}: expected a comma list of token counts, e.g. 2048,8192,32768")
    if a.seq_sweep and a.mode != "rows":
        p.error("--seq-sweep needs --mode rows (chat samples have their own lengths)")
    if any(n < 16 for n in a.seq_sweep):
        p.error("--seq-sweep: row lengths must be >= 16 tokens")
    if a.dry_run:
        if "--shapes" not in " ".join(argv):
            a.shapes = ["tiny-llama"]
        if "--steps-warmup" not in " ".join(argv):
            a.steps_warmup = 1
        if "--steps-timed" not in " ".join(argv):
            a.steps_timed = 1
    if a.steps_timed < 1 or a.steps_warmup < 0:
        p.error("--steps-timed must be >= 1 and --steps-warmup >= 0")
    for s in a.shapes:
        if s not in SHAPES:
            p.error(f"unknown shape {s}; choose from {', '.join(SHAPES)}")
    for s in a.sides:
        if s not in ("hsloth", "hsloth-ref", "hf", "liger", "unsloth"):
            p.error(f"unknown side {s}")
    for s in a.shapes:
        too_long = [n for n in a.seq_sweep if n > SHAPES[s]["max_position_embeddings"]]
        if too_long:
            p.error(f"--seq-sweep {too_long} exceeds {s}'s max_position_embeddings "
                    f"({SHAPES[s]['max_position_embeddings']})")
    if not (os.path.isfile(a.hsloth) and os.access(a.hsloth, os.X_OK)):  # prep needs it whatever the sides
        p.error(f"--hsloth {a.hsloth} is not an executable (build it: cmake --build build-gpu --target hsloth)")
    a.hsloth = os.path.abspath(a.hsloth)
    a.peers = os.path.abspath(a.peers)
    a.testdata = os.path.abspath(a.testdata)
    if not a.dry_run and "unsloth" in a.sides and not os.path.exists(os.path.join(a.peers, "unsloth.sh")):
        p.error(f"no unsloth.sh in --peers {a.peers} (cp -r ../shared/peers .peers and carry it)")
    return a


def main(argv):
    if argv and argv[0] == "_make":
        p = argparse.ArgumentParser()
        p.add_argument("--shape", required=True)
        p.add_argument("--dir", required=True)
        p.add_argument("--tokenizer", required=True)
        p.add_argument("--device", default="cuda")
        a = p.parse_args(argv[1:])
        t = time.time()
        n = make_model(a.shape, a.dir, a.tokenizer, a.device)
        print(f"wrote {a.shape}: {n / 2**30:.2f} GiB of bf16 weights to {a.dir} in {time.time() - t:.1f}s")
        return 0
    if argv and argv[0] == "_worker":
        p = argparse.ArgumentParser()
        for k in ["--side", "--shape", "--model", "--shards", "--mode"]:
            p.add_argument(k, required=True)
        for k, d in [("--bs", 8), ("--ckpt", 0), ("--steps-warmup", 3), ("--steps-timed", 11), ("--pad-id", 0),
                     ("--seed", 0), ("--seq", SEQ)]:
            p.add_argument(k, type=int, default=d)
        p.add_argument("--finetune", default="lora", choices=["lora", "qlora", "full"])
        p.add_argument("--hf-full", default="amp", choices=["amp", "bf16"])
        p.add_argument("--peers", default=".peers", help="unsloth side: where bench_unsloth.py is")
        p.add_argument("--allow-cpu", action="store_true")
        p.add_argument("--fp32", action="store_true")
        return worker(p.parse_args(argv[1:]))
    if argv and argv[0] == "_unsloth":
        # PEERS/bench_unsloth.py with its module globals SEQ / WARMUP / TIMED set (it reads rows of SEQ tokens,
        # loads the model with max_seq_length = SEQ and counts SEQ tokens per row); nothing else changes.
        p = argparse.ArgumentParser()
        p.add_argument("--peers", required=True)
        for k in ["--seq", "--warmup", "--timed"]:
            p.add_argument(k, type=int, required=True)
        p.add_argument("args", nargs="+")
        a = p.parse_args(argv[1:])
        sys.path.insert(0, a.peers)
        import bench_unsloth
        bench_unsloth.SEQ, bench_unsloth.WARMUP, bench_unsloth.TIMED = a.seq, a.warmup, a.timed
        sys.argv = [os.path.join(a.peers, "bench_unsloth.py")] + a.args
        return bench_unsloth.main()
    b = Bench(parse(argv))
    b.main()
    return 1 if b.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
