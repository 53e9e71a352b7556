"""NF4 (src/quant/nf4, driven through nf4_tool) against bitsandbytes 0.50.2 and transformers, on the CPU.

  * a tiny Llama quantized by transformers + bitsandbytes (BitsAndBytesConfig nf4 + double quant, CPU) and
    written by save_pretrained: read_nf4 + dequantize_nf4 of every projection is bit-identical to bitsandbytes'
    dequantize_4bit of the same state through its pure-torch backend (and its native CPU one where
    in % 64 == 0: its AVX-512 kernel indexes absmax per row otherwise), shapes with in % 64 == 0 and != 0;
  * quantize_nf4 of the same bf16 weights writes the very tensors transformers wrote (packed codes, absmax codes,
    nested absmax, both code maps, the nested offset), and bitsandbytes' QuantState.from_dict reads ours;
  * the same for standalone weights quantized with bitsandbytes.functional.quantize_4bit (fp32/bf16/fp16, odd
    sizes, blocks crossing rows, a 256-block of equal absmax, an all-zero weight, a large weight with 100+
    nested blocks);
  * unsupported states (fp4, no double quantization, blocksize 128) are refused naming the tensor and the key;
  * with a GPU (and a CUDA build): our CUDA quantizer writes the tensors bitsandbytes' CUDA quantizer writes,
    and our CUDA dequantization equals bitsandbytes' CUDA dequantize_4bit of the same state, bit for bit.
usage: nf4_bnb.py PATH/TO/nf4_tool   (exit 77 when bitsandbytes/transformers are not importable)
"""

import json
import os
import subprocess
import sys
import tempfile
import warnings

try:
    import torch
    from safetensors.torch import load_file, save_file
    import bitsandbytes
    import bitsandbytes.functional as F
    from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM
except ImportError as e:
    print(f"skipping: {e} (pip install bitsandbytes==0.50.2, see launch/requirements-test.txt)")
    sys.exit(77)

warnings.filterwarnings("ignore")
TOOL = sys.argv[1]
failures = []
SUFFIX = ".quant_state.bitsandbytes__nf4"
PARTS = ["", ".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map"]


def expect(what, cond, detail=""):
    print(f"  {'ok ' if cond else 'FAIL'} {what} {detail}")
    if not cond:
        failures.append(f"{what} {detail}")


def tool(*args, ok=True):
    r = subprocess.run([TOOL, *map(str, args)], capture_output=True, text=True)
    if ok and r.returncode != 0:
        raise RuntimeError(f"nf4_tool {args[0]} failed: {r.stderr}")
    return r


def state_of(sd, name):
    """bitsandbytes' QuantState of weight `name` from a state dict in transformers' layout."""
    qs = {k[len(name) + 1:]: v for k, v in sd.items() if k.startswith(name + ".")}
    return F.QuantState.from_dict(qs, device=torch.device("cpu"))


def bnb_dequant_pure(packed, st):
    """bitsandbytes.functional.dequantize_4bit with the 4-bit step on its pure-torch (default) backend."""
    absmax = F.dequantize_blockwise(st.absmax, st.state2)
    absmax += st.offset
    fn = getattr(_dequantize_4bit_compute, "__wrapped__", _dequantize_4bit_compute)  # eager, no torch.compile
    return fn(packed.reshape(-1), absmax.float(), st.code, st.blocksize, st.shape, st.dtype)


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.view(torch.uint8) if a.dtype != torch.uint8
                                                                   else a, b.view(torch.uint8) if b.dtype != torch.uint8
                                                                   else b)


def check_dequant(sd, path, names, label):
    out = os.path.join(os.path.dirname(path), "dq_" + os.path.basename(path))
    tool("dequant", path, out)
    ours = load_file(out)
    expect(f"{label}: one output per NF4 weight", sorted(ours) == sorted(names), str(sorted(ours)))
    for n in names:
        st = state_of(sd, n)
        ref = bnb_dequant_pure(sd[n], st)
        expect(f"{label}: {n} {tuple(st.shape)} {st.dtype} == bnb pure-torch dequantize_4bit",
               n in ours and same(ours[n], ref))
        if st.shape[-1] % 64 == 0:
            expect(f"{label}: {n} == bnb native CPU dequantize_4bit", n in ours and same(ours[n], F.dequantize_4bit(sd[n], st)))


def check_quant(dense, sd, names, tmp, label):
    src = os.path.join(tmp, f"dense_{label}.safetensors")
    save_file({n: dense[n].contiguous() for n in names}, src)
    out = os.path.join(tmp, f"ours_{label}.safetensors")
    tool("quant", src, out)
    ours = load_file(out)
    for n in names:
        for p in PARTS:
            a, b = ours.get(n + p), sd[n + p]
            if p == ".absmax" and a is not None and a.shape == b.shape and not torch.equal(a, b):
                d = (a != b).sum().item()
                expect(f"{label}: {n}{p} equal to bitsandbytes'", False, f"({d} of {b.numel()} absmax codes differ)")
            else:
                expect(f"{label}: {n}{p} equal to bitsandbytes'", a is not None and same(a, b))
        js_ours = json.loads(bytes(ours[n + SUFFIX].tolist()).decode())
        js_bnb = json.loads(bytes(sd[n + SUFFIX].tolist()).decode())
        expect(f"{label}: {n} quant state JSON equal (nested_offset {js_bnb['nested_offset']})", js_ours == js_bnb,
               f"{js_ours} vs {js_bnb}")
        # bitsandbytes reads what we wrote and dequantizes it to the same values as its own state.
        st = state_of(ours, n)
        expect(f"{label}: {n} bitsandbytes reads our tensors", same(bnb_dequant_pure(ours[n], st),
                                                                    bnb_dequant_pure(sd[n], state_of(sd, n))))


def transformers_folder(tmp, hidden, inter, seed):
    cfg = LlamaConfig(vocab_size=96, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    dense_dir, q_dir = os.path.join(tmp, f"dense{seed}"), os.path.join(tmp, f"q4_{seed}")
    model.save_pretrained(dense_dir)
    bc = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                            bnb_4bit_compute_dtype=torch.bfloat16)
    q = AutoModelForCausalLM.from_pretrained(dense_dir, quantization_config=bc, device_map="cpu",
                                             dtype=torch.bfloat16)
    q.save_pretrained(q_dir)
    return load_file(os.path.join(dense_dir, "model.safetensors")), os.path.join(q_dir, "model.safetensors")


def gpu_checks(weights, tmp):
    if not torch.cuda.is_available() or tool("info").stdout.strip() != "cuda 1":
        print("  (no GPU or no CUDA build: bitsandbytes' CUDA kernels not compared)")
        return
    sd = {}
    for n, w in weights.items():
        packed, st = F.quantize_4bit(w.cuda(), quant_type="nf4", blocksize=64, compress_statistics=True)
        sd[n] = packed.cpu()
        sd.update({f"{n}.{k}": v.cpu() for k, v in st.as_dict(packed=True).items()})
    path = os.path.join(tmp, "bnb_cuda.safetensors")
    save_file(sd, path)
    # Our CUDA quantizer against bitsandbytes' CUDA quantizer.
    src = os.path.join(tmp, "dense_cuda.safetensors")
    save_file({n: w.contiguous() for n, w in weights.items()}, src)
    out = os.path.join(tmp, "ours_cuda.safetensors")
    tool("quant-cuda", src, out)
    ours = load_file(out)
    for n in sorted(weights):
        for p in PARTS:
            a, b = ours[n + p], sd[n + p]
            d = (a.reshape(-1) != b.reshape(-1)).sum().item() if a.shape == b.shape else -1
            expect(f"cuda: {n}{p} equal to bitsandbytes' CUDA quantizer", d == 0, f"({d} of {b.numel()} differ)")
        js_ours = json.loads(bytes(ours[n + SUFFIX].tolist()).decode())
        js_bnb = json.loads(bytes(sd[n + SUFFIX].tolist()).decode())
        expect(f"cuda: {n} quant state JSON equal", js_ours == js_bnb, f"{js_ours} vs {js_bnb}")
    # Our CUDA dequantization against bitsandbytes' CUDA dequantize_4bit of its own state.
    dq = os.path.join(tmp, "dq_cuda.safetensors")
    tool("dequant-cuda", path, dq)
    ours = load_file(dq)
    for n in sorted(weights):
        st = state_of(sd, n)
        st.to(torch.device("cuda"))
        ref = F.dequantize_4bit(sd[n].cuda(), st).cpu()
        expect(f"cuda: {n} dequantized == bnb CUDA dequantize_4bit", same(ours[n], ref))
        expect(f"cuda: {n} dequantized == bnb pure-torch (CPU)", same(ours[n], bnb_dequant_pure(sd[n], state_of(sd, n))))


def main():
    print(f"bitsandbytes {bitsandbytes.__version__}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        # 1. folders written by transformers + bitsandbytes (hidden 64: in % 64 == 0; 96 and FFN 160: != 0).
        for hidden, inter, seed in [(64, 160, 1), (96, 128, 2)]:
            dense, path = transformers_folder(tmp, hidden, inter, seed)
            sd = load_file(path)
            names = sorted(k[: -len(SUFFIX)] for k in sd if k.endswith(SUFFIX))
            expect(f"transformers wrote 14 NF4 projections (hidden {hidden})", len(names) == 14, str(len(names)))
            check_dequant(sd, path, names, f"transformers h{hidden}")
            check_quant(dense, sd, names, tmp, f"transformers h{hidden}")

        # 2. standalone weights through bitsandbytes.functional (its CPU quantizer), transformers' layout.
        g = torch.Generator().manual_seed(7)
        weights = {
            "w.bf16": torch.randn(64, 128, generator=g).bfloat16(),
            "w.fp16_cross_rows": (torch.randn(96, 100, generator=g) * 0.02).half(),
            "w.fp32": torch.randn(33, 320, generator=g),
            "w.odd": torch.randn(7, 9, generator=g).bfloat16(),
            "w.big": (torch.randn(1024, 4160, generator=g) * 0.03).bfloat16(),
            "w.outliers": (torch.randn(256, 192, generator=g) * torch.rand(256, 1, generator=g) * 4).bfloat16(),
            "w.equal_absmax": torch.ones(64, 64).bfloat16() * 0.5,
            "w.zero": torch.zeros(16, 64),
        }
        sd = {}
        for n, w in weights.items():
            packed, st = F.quantize_4bit(w, quant_type="nf4", blocksize=64, compress_statistics=True)
            sd[n] = packed
            sd.update({f"{n}.{k}": v for k, v in st.as_dict(packed=True).items()})
        path = os.path.join(tmp, "bnb.safetensors")
        save_file(sd, path)
        check_dequant(sd, path, sorted(weights), "functional")
        check_quant(weights, sd, sorted(weights), tmp, "functional")

        # 3. what we do not support is refused, naming the tensor and the key.
        w = torch.randn(32, 64, generator=g).bfloat16()
        cases = {
            "fp4": (dict(quant_type="fp4", blocksize=64, compress_statistics=True), ["fp4", "nf4"]),
            "nodq": (dict(quant_type="nf4", blocksize=64, compress_statistics=False), ["nested_offset", "double"]),
            "bs128": (dict(quant_type="nf4", blocksize=128, compress_statistics=True), ["'blocksize'", "128"]),
        }
        for n, (kw, words) in cases.items():
            packed, st = F.quantize_4bit(w, **kw)
            bad = {f"m.{n}.weight": packed}
            bad.update({f"m.{n}.weight.{k}": v for k, v in st.as_dict(packed=True).items()})
            p = os.path.join(tmp, f"bad_{n}.safetensors")
            save_file(bad, p)
            r = tool("dequant", p, os.path.join(tmp, "x.safetensors"), f"m.{n}.weight", ok=False)
            msg = r.stderr
            expect(f"{n}: refused with a message naming the weight and the key",
                   r.returncode == 1 and f"m.{n}.weight" in msg and all(x in msg for x in words)
                   and "supported" in msg, repr(msg[:300]))

        gpu_checks(weights, tmp)

    if failures:
        print(f"FAILED: {len(failures)} check(s)")
        sys.exit(1)
    print("all NF4 checks passed")


main()
