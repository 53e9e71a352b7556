"""bench/write_nf4_folder.py (a random-weight folder in transformers' pre-quantized bitsandbytes NF4 layout, written
directly) against transformers + bitsandbytes on the CPU, and bench/qlora_70b.py's --dry-run on that folder.

The tiny-llama shape is written by the script (several files + model.safetensors.index.json: --shard-mb 1).
(a) layout: the same shape saved by transformers + bitsandbytes (BitsAndBytesConfig(load_in_4bit, nf4, double
    quant, bf16 compute) from a bf16 model) has the same config.json (quantization_config included), the same
    tensor names, dtypes and shapes, bit-identical quant_map / nested_quant_map and quant-state JSON of the same text
    form with the same keys and values (nested_offset aside: transformers' is the mean of its raw absmax).
(b) transformers loads the folder with bitsandbytes' Linear4bit; bitsandbytes' dequantize_4bit of every projection is
    finite with RMS within 15% of the intended std (the embeddings too).
(c) `hsloth eval` (float32) equals transformers' loss on a few 128-token rows: within 1e-5 relative of the dense
    float32 model holding bitsandbytes' dequantized weights, within 1e-4 of the Linear4bit model itself (bitsandbytes
    0.50.2's Linear4bit forward dequantizes to float32 directly, skipping the quant state's bfloat16: ~5e-5 off).
(d) `hsloth train` with finetune = qlora (LoRA on all seven projections, grad_ckpt offload, float32) runs 2 steps:
    finite losses, step 1's loss (LoRA B = 0) = the dense oracle's loss of one row (1e-5 relative, and closer to it
    than any two rows' losses are to each other), a PEFT adapter with 2 x 14 tensors.
(e) bench/qlora_70b.py --dry-run --reuse on the folder exits 0 (its own check: each run's step-1 loss = the dense
    oracle's loss of one micro-batch) and writes its table and JSON.
Exit 77 (skipped) when bitsandbytes or another oracle package, or the TinyLlama tokenizer, is missing.
"""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("HSLOTH_SOURCE", os.path.dirname(os.path.dirname(HERE)))
BIN = os.environ.get("HSLOTH_BIN", "")
DATA = os.environ.get("HSLOTH_TESTDATA", os.path.join(SRC, "..", "shared", "data"))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(SRC, "bench"))
import script_env  # noqa: E402

SHAPE, STD, SEQ, ROWS = "tiny-llama", 0.1, 128, 4
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def hsloth(*args):
    r = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        print(r.stdout[-3000:], r.stderr[-3000:])
        raise SystemExit(f"hsloth {args[0]} failed with {r.returncode}")
    return r


def headers(folder):
    """name -> (dtype, shape) over every safetensors file of the folder, and name -> file."""
    from safetensors import safe_open

    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    out, where = {}, {}
    for fn in files:
        with safe_open(os.path.join(folder, fn), "pt") as f:
            for k in f.keys():
                sl = f.get_slice(k)
                out[k] = (sl.get_dtype(), tuple(sl.get_shape()))
                where[k] = fn
    return out, where


def tensor(folder, where, name):
    from safetensors import safe_open

    with safe_open(os.path.join(folder, where[name]), "pt") as f:
        return f.get_tensor(name)


def reference_folder(d):
    """The same shape as transformers + bitsandbytes write it pre-quantized (from a bf16 model of random weights)."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    import write_nf4_folder as W

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(W.config_for(SHAPE)).to(torch.bfloat16).save_pretrained(f"{d}/dense")
    cfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.bfloat16)
    m = AutoModelForCausalLM.from_pretrained(f"{d}/dense", quantization_config=cfg, device_map="cpu",
                                             dtype=torch.bfloat16)
    m.save_pretrained(f"{d}/ref")
    return f"{d}/ref"


def check_layout(ours, ref):
    import torch

    skip = {"transformers_version"}
    co = {k: v for k, v in json.load(open(f"{ours}/config.json")).items() if k not in skip}
    cr = {k: v for k, v in json.load(open(f"{ref}/config.json")).items() if k not in skip}
    check(co.get("quantization_config") == cr.get("quantization_config"),
          f"quantization_config is transformers' ({co.get('quantization_config')})")
    diff = sorted(k for k in set(co) | set(cr) if co.get(k) != cr.get(k))
    check(not diff, f"config.json equals transformers' otherwise too (differing keys: {diff})")
    ho, wo = headers(ours)
    hr, wr = headers(ref)
    check(sorted(ho) == sorted(hr), f"the same {len(hr)} tensor names as transformers' folder "
          f"(only ours: {sorted(set(ho) - set(hr))[:4]}, only theirs: {sorted(set(hr) - set(ho))[:4]})")
    # the quant-state JSON's length varies with the digits of its nested_offset
    bad = [k for k in ho if k in hr and ho[k] != hr[k] and not (k.endswith(".bitsandbytes__nf4") and ho[k][0] ==
                                                                hr[k][0] == "U8" and len(ho[k][1]) == len(hr[k][1]) == 1)]
    check(not bad, "every tensor has transformers' dtype and shape" + (f" (not: {bad[:3]}: {[ho[k] for k in bad[:3]]} vs "
                                                                        f"{[hr[k] for k in bad[:3]]})" if bad else ""))
    idx = json.load(open(f"{ours}/model.safetensors.index.json"))
    check(idx["weight_map"] == wo and idx["metadata"]["total_size"] ==
          sum(os.path.getsize(f"{ours}/{f}") for f in set(wo.values())) - sum(
              8 + int.from_bytes(open(f"{ours}/{f}", "rb").read(8), "little") for f in set(wo.values())),
          f"model.safetensors.index.json maps every tensor to its file ({len(set(wo.values()))} files) with the "
          "data's total_size")
    states = [k for k in hr if k.endswith(".quant_state.bitsandbytes__nf4")]
    same_maps = same_state = True
    for k in states:
        w = k[:-len(".quant_state.bitsandbytes__nf4")]
        for sub in [".quant_map", ".nested_quant_map"]:
            same_maps &= torch.equal(tensor(ours, wo, w + sub), tensor(ref, wr, w + sub))
        to = bytes(tensor(ours, wo, k).numpy()).decode()
        tr = bytes(tensor(ref, wr, k).numpy()).decode()
        jo, jr = json.loads(to), json.loads(tr)
        same_state &= (list(jo) == list(jr) and json.dumps(jo) == to and json.dumps(jr) == tr and
                       {a: b for a, b in jo.items() if a != "nested_offset"} ==
                       {a: b for a, b in jr.items() if a != "nested_offset"} and
                       isinstance(jo["nested_offset"], float))
    check(len(states) == 14 and same_maps, f"quant_map and nested_quant_map bit-identical to bitsandbytes' "
          f"({len(states)} NF4 weights)")
    check(same_state, "quant-state JSON: bitsandbytes' keys, key order, text form and values (nested_offset aside)")
    import bitsandbytes.functional as F

    import write_nf4_folder as W
    check(torch.equal(torch.from_numpy(W.dynamic_map()), F.create_dynamic_map(signed=True)) and
          torch.equal(torch.from_numpy(W.NF4), F.get_4bit_type("nf4", device="cpu")),
          "the script's code books are bitsandbytes' create_dynamic_map(signed=True) and get_4bit_type('nf4')")


def models(folder):
    """transformers' Linear4bit model of the folder (float32) and the dense float32 model holding bitsandbytes'
    dequantized weights (write_nf4_folder.transformers_models); checks their weights."""
    import bitsandbytes.functional as F
    import torch

    import write_nf4_folder as W

    q4, dense = W.transformers_models(folder)
    lin = [(n, m) for n, m in q4.named_modules() if type(m).__name__ == "Linear4bit"]
    check(len(lin) == 14, f"transformers loads the folder with bitsandbytes' Linear4bit ({len(lin)} of 14 projections)")
    w = [F.dequantize_4bit(m.weight.data, m.weight.quant_state) for _, m in lin]
    rms = [x.float().pow(2).mean().sqrt().item() for x in w]
    finite = all(bool(torch.isfinite(x).all()) for x in w)
    check(finite and all(0.85 * STD <= r <= 1.15 * STD for r in rms),
          f"dequantized projections finite with RMS ~ {STD} ({min(rms):.4f}..{max(rms):.4f})")
    same = all(torch.equal(x.float(), dense.get_submodule(n).weight) for x, (n, _) in zip(w, lin))
    check(same, "the dense oracle holds bitsandbytes' dequantized projections")
    emb = dense.model.embed_tokens.weight.pow(2).mean().sqrt().item()
    check(0.95 * STD <= emb <= 1.05 * STD, f"embeddings N(0, {STD}): RMS {emb:.4f}")
    return q4, dense


def losses(model, rows):
    import torch

    with torch.no_grad():
        return [model(input_ids=r[None], labels=r[None]).loss.item() for r in rows]


def main():
    miss = script_env.missing(BIN, extra=("h5py", "numpy", "safetensors"))
    if miss:
        return miss
    try:
        import bitsandbytes.functional  # noqa: F401
    except Exception as e:  # ImportError, or a backend that fails to load
        print(f"bitsandbytes not importable ({e}): no NF4 oracle; skipping")
        return 77
    if not os.path.exists(os.path.join(DATA, "tokenizers", "tinyllama", "tokenizer.json")):
        print(f"no TinyLlama tokenizer under {DATA}/tokenizers; skipping")
        return 77
    import torch

    from train_vs_peers import read_samples, write_rows_jsonl

    d = tempfile.mkdtemp(prefix="hs-nf4-folder-")
    try:
        work = f"{d}/work"
        folder = f"{work}/model-{SHAPE}-nf4"  # where bench/qlora_70b.py --reuse finds it
        import write_nf4_folder as W

        rc = W.main(["--shape", SHAPE, "--out", folder, "--shard-mb", "1", "--testdata", DATA])
        check(rc == 0 and os.path.exists(f"{folder}/config.json"),
              "write_nf4_folder.py --shape tiny-llama --shard-mb 1 ran")
        if rc != 0:
            return 1
        summary = W.plan_summary(SHAPE, 1)
        check(summary["files"] >= 2 and summary["nf4_weights"] == 14 and summary["std"] == STD and
              sum(1 for f in os.listdir(folder) if f.endswith(".safetensors")) == summary["files"],
              f"several files and 14 NF4 weights ({summary['files']} files)")

        # (a) layout
        check_layout(folder, reference_folder(d))

        # (b) transformers + bitsandbytes load it
        q4, dense = models(folder)

        # (c) eval
        write_rows_jsonl(f"{folder}/tokenizer.json", ROWS, f"{d}/rows.jsonl", seq=SEQ)
        hsloth("prep", "--input", f"{d}/rows.jsonl", "--tokenizer", folder, "--out", f"{d}/shards", "--format", "text",
               "--max-len", SEQ, "--too-long", "truncate")
        rows = [torch.from_numpy(s[0].astype("int64")) for s in read_samples(f"{d}/shards")]
        check(len(rows) == ROWS and all(len(x) == SEQ for x in rows), f"{ROWS} rows of {SEQ} tokens")
        ld, lq = losses(dense, rows), losses(q4, rows)
        ref_d, ref_q = sum(ld) / len(ld), sum(lq) / len(lq)
        ours = json.loads(hsloth("eval", "--model", folder, "--data", f"{d}/shards", "--device", "cpu", "--dtype",
                                 "float32", "--json").stdout)["loss"]
        check(abs(ours - ref_d) <= 1e-5 * abs(ref_d),
              f"hsloth eval == transformers (dense float32, bitsandbytes' dequantized weights): {ours:.7f} vs {ref_d:.7f}")
        check(abs(ours - ref_q) <= 1e-4 * abs(ref_q),
              f"hsloth eval == transformers (Linear4bit, float32 compute): {ours:.7f} vs {ref_q:.7f}")

        # (d) train: finetune = qlora, 2 steps, one row per step
        run = f"{d}/run"
        hsloth("train", "--finetune", "qlora", "--model.path", folder, "--model.dtype", "float32", "--data.train",
               f"{d}/shards", "--run.dir", run, "--lora.r", 4, "--lora.alpha", 8, "--train.max_steps", 2,
               "--train.tokens_per_batch", SEQ, "--train.grad_ckpt", "offload", "--train.lr", 1e-3,
               "--train.warmup_steps", 0, "--log.every", 1)
        ms = [json.loads(x) for x in open(f"{run}/metrics.jsonl") if x.strip()]
        tl = [m["loss"] for m in ms if "loss" in m]
        check(len(tl) == 2 and all(math.isfinite(x) for x in tl), f"2 QLoRA steps with finite losses ({tl})")
        if tl:
            j = min(range(len(ld)), key=lambda i: abs(ld[i] - tl[0]))
            gap = min(abs(x - y) for i, x in enumerate(ld) for y in ld[i + 1:])
            diff = abs(ld[j] - tl[0])
            check(diff <= 1e-5 * abs(ld[j]) and diff < 0.5 * gap,
                  f"step-1 loss {tl[0]:.7f} = transformers' loss of row {j}: {ld[j]:.7f} (rows differ by >= {gap:.1e})")
        from safetensors.torch import load_file
        ad = load_file(f"{run}/final/adapter_model.safetensors")
        check(len(ad) == 28 and all("lora_A" in k or "lora_B" in k for k in ad),
              f"final PEFT adapter: {len(ad)} LoRA tensors (2 x 14 projections)")

        # (e) the 70B benchmark's dry run on this folder
        import qlora_70b

        rc = qlora_70b.main(["--dry-run", "--hsloth", BIN, "--reuse", "--keep", "--work", work, "--out", f"{d}/out",
                             "--testdata", DATA])
        res = json.load(open(f"{d}/out/qlora_70b.json")) if os.path.exists(f"{d}/out/qlora_70b.json") else {}
        recs = res.get("records", [])
        check(rc == 0 and len(recs) == 2 and all(x.get("tok_s", 0) > 0 and not x.get("error") for x in recs)
              and all(x.get("dry_check", {}).get("ok") for x in recs) and os.path.exists(f"{d}/out/qlora_70b.md"),
              f"qlora_70b.py --dry-run: rc {rc}, {len(recs)} runs, its loss checks "
              f"{[x.get('dry_check', {}).get('ok') for x in recs]}")
    finally:
        if not failures:
            shutil.rmtree(d, ignore_errors=True)
        else:
            print(f"work folder kept: {d}")
    print(f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
