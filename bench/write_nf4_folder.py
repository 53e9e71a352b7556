"""A random-weight HF folder in transformers' pre-quantized bitsandbytes NF4 layout, written directly (never a bf16
copy of the projections): the folder `AutoModelForCausalLM.from_pretrained(..., quantization_config=
BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
bnb_4bit_compute_dtype=torch.bfloat16)).save_pretrained(...)` writes, for shapes too big to make that way (the 70B
QLoRA benchmark of issue 13: bench/qlora_70b.py).

  python3 bench/write_nf4_folder.py --shape llama3.1-70b --out /tmp/llama70b-nf4       # 39.5 GB, 19 files
  python3 bench/write_nf4_folder.py --shape tiny-llama --out /tmp/tiny-nf4 --plan      # sizes only, no writing

Layout (bitsandbytes 0.50.2; src/quant/nf4.h): each of the seven projections (q,k,v,o,gate,up,down) of every
layer, weight [out, in], is stored as
  <name>.weight                                   uint8 [ceil(out*in/2), 1]: two 4-bit codes per byte over the
                                                  row-major flattened weight (element 2i in the high nibble)
  <name>.weight.absmax                            uint8 [ceil(out*in/64)]: 8-bit code of each 64-block's absmax
  <name>.weight.quant_map                         float32 [16]: the NF4 code book
  <name>.weight.nested_absmax                     float32 [ceil(blocks/256)]
  <name>.weight.nested_quant_map                  float32 [256]: create_dynamic_map(signed=True)
  <name>.weight.quant_state.bitsandbytes__nf4     uint8 bytes of the JSON {"quant_type": "nf4", "blocksize": 64,
      "dtype": "bfloat16", "shape": [out, in], "nested_blocksize": 256, "nested_dtype": "float32",
      "nested_offset": o} (json.dumps, bitsandbytes' key order)
and dequantizes (bitsandbytes, hsloth) to  w = quant_map[nibble] * (nested_quant_map[absmax_code] *
nested_absmax[block // 256] + o).  Embeddings, norms and lm_head are bf16 (norms 1, the others N(0, std)).
config.json is transformers' for the shape plus BitsAndBytesConfig(...).to_dict() as quantization_config (what
transformers writes); the tokenizer is copied from the shared test data as bench/train_vs_peers.py does (TinyLlama's
32,000 ids for the Llama shapes: all below vocab_size 128,256, so every data id has an embedding row).

Random weights with a sensible scale: 4-bit codes and absmax codes uniform random bytes; nested_absmax uniform in
[0.2, 0.3] x o; o = std / 0.5175 (0.5175 = the RMS of the 16 NF4 values), so each 64-block's dequantized absmax
lies in o x [0.7, 1.3] and the dequantized weights have RMS ~= std (0.02, transformers' initializer_range; 0.1 for
the tiny-* shapes, so that row losses differ visibly while staying far from saturation: at train_vs_peers' 0.5,
bitsandbytes' CPU Linear4bit forward, which skips the quant state's bf16 rounding, is 1.7e-4 off the dequantized
weights' float32 loss (hsloth's: 5e-8), at 0.1 ~2e-5). The nested offset of a folder
transformers writes is the float32 mean of the raw absmax; here it is simply o (stored, as there, only in the JSON).
bf16 N(0, std) values come from a 65,536-entry table of the normal's quantiles indexed by random uint16s (exact
quantiles, no Box-Muller cost). Every tensor has its own generator seeded by (--seed, crc32(name)): the content
does not depend on --shard-mb or --jobs.

Speed: shards of --shard-mb (default 2048) are written by --jobs processes in parallel (spawned; each streams its
tensors in 64 MiB chunks straight into the file: ~0.3 GB of memory per process, never a whole shard), so the time is
the disk's write time. Measured on this repo's 2-core CPU box (load average 4-6 from parallel builds, writes into
the page cache): llama3.2-1b (1.03 GB) 2.95 s with 1 process = 349 MB/s, 2.23 s with 2 processes (--shard-mb 256)
= 460 MB/s; llama3.1-8b (5.70 GB, 3 files) 13.0 s with 2 processes = 439 MB/s. So ~220-350 MB/s per core: the
70B folder (39.5 GB, 19 files) would take ~90 s even at this box's 440 MB/s; with 16 cores (>= 3 GB/s of generation)
it is bound by the disk: under 2 minutes at >= 350 MB/s of sustained writes.
"""
import argparse
import json
import math
import os
import shutil
import struct
import sys
import time
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from train_vs_peers import _LLAMA3_ROPE_8B, TOKENIZER  # noqa: E402
from train_vs_peers import SHAPES as PEER_SHAPES  # noqa: E402

# train_vs_peers' shapes plus the 70B one (config.json of meta-llama/Llama-3.1-70B).
SHAPES = dict(PEER_SHAPES)
SHAPES["llama3.1-70b"] = dict(model_type="llama", hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                              num_attention_heads=64, num_key_value_heads=8, head_dim=128, vocab_size=128256,
                              max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=False,
                              bos_token_id=128000, eos_token_id=128001, rope_parameters=_LLAMA3_ROPE_8B)

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
BLOCK, NESTED_BLOCK = 64, 256
STATE_SUFFIX = ".quant_state.bitsandbytes__nf4"
# bitsandbytes.functional.get_4bit_type("nf4") (hardcoded there too)
NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], dtype=np.float32)
NF4_RMS = float(np.sqrt(np.mean(NF4.astype(np.float64) ** 2)))  # 0.5175
CHUNK = 64 << 20  # bytes generated and written at a time


def dynamic_map():
    """bitsandbytes.functional.create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8) with the same
    torch float32 operations (the nested_quant_map; tests/parity/nf4_folder.py compares it with bitsandbytes')."""
    import torch

    data = []
    for i in range(7):
        boundaries = torch.linspace(0.1, 1, 2 ** i + 1, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-6 + i)) * means).tolist()
        data += (-(10 ** (-6 + i)) * means).tolist()
    data += [0, 1.0]
    data.sort()
    return torch.tensor(data, dtype=torch.float32).numpy()


def bf16_bits(x):
    """float32 array -> uint16 bf16 bit patterns, round to nearest even (torch's .to(torch.bfloat16))."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def normal_table(std):
    """uint16 [65536]: bf16 of std * Phi^-1((i + 0.5) / 65536), i.e. a uniform random index gives N(0, std)."""
    from statistics import NormalDist

    nd = NormalDist(0.0, std)
    return bf16_bits(np.array([nd.inv_cdf((i + 0.5) / 65536) for i in range(65536)], dtype=np.float32))


# ------------------------------------------------------------------------------------------------------ plan

def config_for(shape):
    """transformers' config of the shape (bf16), without quantization_config."""
    import torch
    from transformers import AutoConfig

    spec = dict(SHAPES[shape])
    cfg = AutoConfig.for_model(spec.pop("model_type"), **spec)
    cfg.dtype = torch.bfloat16
    return cfg


def quantization_config():
    """What transformers writes into config.json for BitsAndBytesConfig(load_in_4bit, nf4, double quant, bf16)."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16).to_dict()


def weight_shapes(cfg):
    """(name, shape) of every tensor of the model, transformers' names (from its meta-device model); sets
    cfg.architectures."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(cfg)
    out = [(n, tuple(t.shape)) for n, t in meta.state_dict().items()]
    cfg.architectures = [type(meta).__name__]  # as save_pretrained of the model writes it
    if cfg.tie_word_embeddings:
        out = [(n, s) for n, s in out if n != "lm_head.weight"]
    return out


def is_projection(name):
    parts = name.split(".")
    return ".layers." in name and len(parts) >= 2 and parts[-1] == "weight" and parts[-2] in PROJECTIONS


def plan_groups(shapes, std):
    """Groups of tensors kept in one file: the six tensors of an NF4 weight, or one bf16 tensor. Each tensor:
    dict(name, dtype, shape, nbytes, gen) with gen one of ("random",), ("const", array), ("uniform", lo, hi),
    ("normal",), ("ones",)."""
    o = float(np.float32(std / NF4_RMS))
    groups = []
    for name, shp in shapes:
        if not is_projection(name):
            numel = math.prod(shp)
            gen = ("ones",) if name.endswith("norm.weight") else ("normal",)
            groups.append([dict(name=name, dtype="BF16", shape=list(shp), nbytes=2 * numel, gen=gen)])
            continue
        if len(shp) != 2:
            raise SystemExit(f"{name}: expected a 2-d projection weight, got shape {shp}")
        numel = shp[0] * shp[1]
        blocks = -(-numel // BLOCK)
        nested = -(-blocks // NESTED_BLOCK)
        state = json.dumps({"quant_type": "nf4", "blocksize": BLOCK, "dtype": "bfloat16", "shape": list(shp),
                            "nested_blocksize": NESTED_BLOCK, "nested_dtype": "float32", "nested_offset": o})
        state = np.frombuffer(state.encode(), dtype=np.uint8)
        groups.append([
            dict(name=name, dtype="U8", shape=[-(-numel // 2), 1], nbytes=-(-numel // 2), gen=("random",)),
            dict(name=name + ".absmax", dtype="U8", shape=[blocks], nbytes=blocks, gen=("random",)),
            dict(name=name + ".quant_map", dtype="F32", shape=[16], nbytes=64, gen=("const", NF4)),
            dict(name=name + ".nested_absmax", dtype="F32", shape=[nested], nbytes=4 * nested,
                 gen=("uniform", 0.2 * o, 0.3 * o)),
            dict(name=name + ".nested_quant_map", dtype="F32", shape=[256], nbytes=1024, gen=("const", None)),
            dict(name=name + STATE_SUFFIX, dtype="U8", shape=[state.size], nbytes=state.size, gen=("const", state)),
        ])
    return groups, o


def pack_shards(groups, shard_bytes):
    """Groups in model order into files of <= shard_bytes (a group bigger than that gets a file of its own)."""
    shards, cur, cur_bytes = [], [], 0
    for g in groups:
        nb = sum(t["nbytes"] for t in g)
        if cur and cur_bytes + nb > shard_bytes:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur += g
        cur_bytes += nb
    if cur:
        shards.append(cur)
    return shards


# ---------------------------------------------------------------------------------------------- shard writer

def tensor_rng(seed, name):
    return np.random.Generator(np.random.SFC64(np.random.SeedSequence([seed, zlib.crc32(name.encode())])))


def random_bytes(rng, n):
    return rng.bit_generator.random_raw(-(-n // 8)).view(np.uint8)[:n]


def chunks(t, seed, table, nested_map):
    """The bytes of tensor t, in pieces of <= CHUNK."""
    kind = t["gen"][0]
    n = t["nbytes"]
    if kind == "const":
        arr = t["gen"][1] if t["gen"][1] is not None else nested_map
        yield np.ascontiguousarray(arr).view(np.uint8)
        return
    if kind == "ones":
        yield np.full(n // 2, 0x3F80, dtype=np.uint16).view(np.uint8)  # bf16 1.0
        return
    rng = tensor_rng(seed, t["name"])
    if kind == "uniform":
        lo, hi = t["gen"][1], t["gen"][2]
        yield rng.uniform(lo, hi, n // 4).astype(np.float32).view(np.uint8)
        return
    for start in range(0, n, CHUNK):
        k = min(CHUNK, n - start)
        if kind == "random":
            yield random_bytes(rng, k)
        else:  # normal bf16: table lookups at uniform random uint16 indices
            yield np.take(table, random_bytes(rng, k).view(np.uint16)).view(np.uint8)


def safetensors_header(tensors):
    header, off = {}, 0
    for t in tensors:
        header[t["name"]] = {"dtype": t["dtype"], "shape": t["shape"], "data_offsets": [off, off + t["nbytes"]]}
        off += t["nbytes"]
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, off


def write_shard(path, tensors, seed, std, nested_map):
    """One safetensors file, streamed: header, then each tensor's bytes. Returns the bytes written."""
    table = normal_table(std) if any(t["gen"][0] == "normal" for t in tensors) else None
    head, size = safetensors_header(tensors)
    with open(path, "wb") as f:
        f.write(head)
        for t in tensors:
            written = 0
            for c in chunks(t, seed, table, nested_map):
                f.write(memoryview(c))
                written += c.nbytes
            if written != t["nbytes"]:
                raise RuntimeError(f"{t['name']}: wrote {written} bytes, expected {t['nbytes']}")
    return len(head) + size


# ---------------------------------------------------------------------------------------------------- folder

def tokenizer_dir(shape, testdata):
    d = os.path.join(testdata, "tokenizers", TOKENIZER[SHAPES[shape]["model_type"]])
    if not os.path.exists(os.path.join(d, "tokenizer.json")):
        raise SystemExit(f"no tokenizer.json in {d}\n  HINT: pass --testdata (or set $HSLOTH_TESTDATA) to the folder "
                         "holding tokenizers/ (the checkout's testdata/ or ../shared/data)")
    return d


def write_folder(shape, out, testdata, std=None, seed=0, shard_mb=2048, jobs=0, log=print):
    """Writes the folder; returns a summary dict (files, bytes, seconds, MB/s). With several files the writers are
    spawned processes: a script calling this needs the usual `if __name__ == "__main__":` guard."""
    import concurrent.futures as cf
    import multiprocessing as mp

    if shape not in SHAPES:
        raise SystemExit(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    std = std if std is not None else (0.1 if shape.startswith("tiny-") else 0.02)
    tok = tokenizer_dir(shape, testdata)
    t0 = time.time()
    cfg = config_for(shape)
    check_vocab(tok, cfg.vocab_size)
    groups, offset = plan_groups(weight_shapes(cfg), std)
    shards = pack_shards(groups, shard_mb << 20)
    nested_map = dynamic_map()
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    k = len(shards)
    names = ["model.safetensors"] if k == 1 else [f"model-{i + 1:05d}-of-{k:05d}.safetensors" for i in range(k)]
    jobs = jobs or min(k, os.cpu_count() or 1)
    t1 = time.time()
    total = 0
    if jobs == 1:
        for n, s in zip(names, shards):
            total += write_shard(os.path.join(out, n), s, seed, std, nested_map)
    else:
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as ex:
            futs = [ex.submit(write_shard, os.path.join(out, n), s, seed, std, nested_map) for n, s in zip(names, shards)]
            total = sum(f.result() for f in futs)
    write_s = time.time() - t1
    if k > 1:
        weight_map = {t["name"]: n for n, s in zip(names, shards) for t in s}
        with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": sum(t["nbytes"] for s in shards for t in s)},
                       "weight_map": weight_map}, f, indent=1)
    cfg.quantization_config = quantization_config()
    cfg.save_pretrained(out)
    for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]:
        if os.path.exists(os.path.join(tok, f)):
            shutil.copyfile(os.path.join(tok, f), os.path.join(out, f))
    secs = time.time() - t0
    summary = dict(shape=shape, out=out, files=k, bytes=total, nf4_weights=sum(1 for g in groups if len(g) == 6),
                   std=std, nested_offset=offset, jobs=jobs, write_s=round(write_s, 2), total_s=round(secs, 2),
                   write_mb_s=round(total / 1e6 / max(write_s, 1e-9), 1))
    log(f"write_nf4_folder: {shape} -> {out}: {k} file(s), {total / 1e9:.2f} GB, {summary['nf4_weights']} NF4 "
        f"weights, written in {write_s:.1f}s by {jobs} process(es) ({summary['write_mb_s']:.0f} MB/s); "
        f"{secs:.1f}s in all")
    return summary


def check_vocab(tok, vocab_size):
    """Every id the tokenizer can produce has an embedding row."""
    from tokenizers import Tokenizer

    n = Tokenizer.from_file(os.path.join(tok, "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    if n > vocab_size:
        raise SystemExit(f"{tok}/tokenizer.json has {n} ids but the shape's vocab_size is {vocab_size}\n"
                         "  HINT: pick a tokenizer whose ids all lie below vocab_size")


def plan_summary(shape, shard_mb=2048, std=None):
    """Sizes without writing: files, bytes per kind."""
    std = std if std is not None else (0.1 if shape.startswith("tiny-") else 0.02)
    groups, offset = plan_groups(weight_shapes(config_for(shape)), std)
    shards = pack_shards(groups, shard_mb << 20)
    nf4 = sum(t["nbytes"] for g in groups if len(g) == 6 for t in g)
    bf16 = sum(t["nbytes"] for g in groups if len(g) == 1 for t in g)
    return dict(shape=shape, files=len(shards), tensors=sum(len(g) for g in groups),
                nf4_weights=sum(1 for g in groups if len(g) == 6), nf4_bytes=nf4, bf16_bytes=bf16,
                bytes=nf4 + bf16, nested_offset=offset, std=std)


def transformers_models(folder):
    """The folder in transformers on the CPU, float32 (for checks; needs bitsandbytes): (q4, dense). q4: as
    from_pretrained loads it (bitsandbytes' Linear4bit projections), its other parameters and its compute cast to
    float32 (from_pretrained keeps config.json's bfloat16 for them). dense: the plain model with every projection
    replaced by bitsandbytes.functional.dequantize_4bit of it (the quant state's bfloat16 values) in float32: the
    weights hsloth computes with. (bitsandbytes 0.50.2's Linear4bit forward dequantizes straight to the input's
    float32, skipping the bfloat16 rounding, so q4's losses differ from dense's by up to ~5e-5 relative.)"""
    import bitsandbytes.functional as F
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    q4 = AutoModelForCausalLM.from_pretrained(folder, device_map="cpu", dtype=torch.float32)
    lin = {n: m for n, m in q4.named_modules() if type(m).__name__ == "Linear4bit"}
    for m in q4.modules():
        if hasattr(m, "support_avx512bf16_for_cpu"):  # bitsandbytes 0.50's AVX-512-bf16 repacking needs out % 32 == 0
            m.support_avx512bf16_for_cpu = False
    for m in lin.values():
        m.compute_dtype = torch.float32
    for prm in q4.parameters():
        if prm.is_floating_point():
            prm.data = prm.data.float()
    cfg = AutoConfig.from_pretrained(folder)
    del cfg.quantization_config
    dense = AutoModelForCausalLM.from_config(cfg).to(torch.float32)
    sd = {n + ".weight": F.dequantize_4bit(m.weight.data, m.weight.quant_state).float() for n, m in lin.items()}
    sd.update({n: prm.data for n, prm in q4.named_parameters() if n not in sd})
    missing, unexpected = dense.load_state_dict(sd, strict=False)
    if unexpected or missing not in ([], ["lm_head.weight"]):
        raise RuntimeError(f"{folder}: the dense model does not take the folder's tensors ({missing}, {unexpected})")
    dense.tie_weights()
    return q4.eval(), dense.eval()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shape", required=True, help=", ".join(SHAPES))
    p.add_argument("--out", help="the folder to write (replaced if it exists)")
    p.add_argument("--testdata", default=os.environ.get("HSLOTH_TESTDATA") or os.path.join(HERE, "..", "testdata"),
                   help="the folder holding tokenizers/ ($HSLOTH_TESTDATA, else the checkout's testdata/)")
    p.add_argument("--std", type=float, default=None, help="RMS of the weights (default 0.02; 0.1 for tiny-*)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-mb", type=int, default=2048, help="safetensors file size limit in MiB")
    p.add_argument("--jobs", type=int, default=0, help="writer processes (default: one per file, <= CPU count)")
    p.add_argument("--plan", action="store_true", help="print the sizes as JSON and write nothing")
    a = p.parse_args(argv)
    if a.plan:
        print(json.dumps(plan_summary(a.shape, a.shard_mb, a.std)))
        return 0
    if not a.out:
        p.error("--out is required (unless --plan)")
    s = write_folder(a.shape, os.path.abspath(a.out), os.path.abspath(a.testdata), a.std, a.seed, a.shard_mb, a.jobs)
    print(json.dumps(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
