"""Our safetensors reader/writer (src/io/safetensors) against the `safetensors` package and transformers.

  * files written by safetensors.torch.save_file (all ten dtypes, scalars, empty tensors, metadata or
    none) are read by us with the same names, dtypes, shapes and bytes;
  * rewritten by our writer they are byte-identical to what the package wrote;
  * our sharded writer's shards are byte-identical to save_file of the same subsets, its index maps every
    tensor, and the package reads them back;
  * a model saved sharded by transformers (save_pretrained with a small max_shard_size) is read through its
    index with every tensor's bytes intact.
usage: model_safetensors.py PATH/TO/model_st_tool   (exit 77 when torch/safetensors/transformers are missing)
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile

try:
    import torch
    from safetensors.torch import load_file, save_file
except ImportError as e:
    print(f"skipping: {e}")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

failures = []
DT = {torch.float64: "F64", torch.int64: "I64", torch.float32: "F32", torch.int32: "I32", torch.bfloat16: "BF16",
      torch.float16: "F16", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}


def expect(what, cond, detail=""):
    print(f"  {'ok ' if cond else 'FAIL'} {what} {detail}")
    if not cond:
        failures.append(f"{what} {detail}")


def tool(exe, *args):
    r = subprocess.run([exe, *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"model_st_tool {args[0]} failed: {r.stderr}")
    return r.stdout


def raw(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def sample_tensors(seed):
    g = torch.Generator().manual_seed(seed)
    out = {}
    shapes = [(3, 5), (7,), (), (2, 0, 3), (1, 1, 1, 4), (9, 2)]
    for i, (dt, name) in enumerate(DT.items()):
        for j, shape in enumerate(shapes[i % 3: i % 3 + 3]):
            x = torch.randn(shape, generator=g) * 50
            if dt == torch.bool:
                t = x > 0
            elif dt.is_floating_point:
                t = x.to(dt)
            else:
                t = x.to(torch.int64).clamp(-100, 100).to(dt) if dt != torch.uint8 else x.abs().to(torch.uint8)
            out[f"layer.{i}.{name.lower()}_{j}"] = t
    return out


def main():
    exe = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="hs-st-") as tmp:
        print("[read and rewrite files written by the safetensors package]")
        # The package writes __metadata__ from a hash map (key order varies between runs), so files with
        # several metadata keys are compared as parsed header + data; with one key or none, byte for byte.
        for k, meta in enumerate([{"format": "pt"}, None, {"format": "pt", "note": "ünïcode ✓"}]):
            tensors = sample_tensors(k)
            src = os.path.join(tmp, f"src{k}.safetensors")
            save_file(tensors, src, metadata=meta)
            dump = json.loads(tool(exe, "dump", src))
            expect("metadata read", dump.pop("__metadata__") == (meta or {}))
            ok = set(dump) == set(tensors) and all(
                dump[n]["dtype"] == DT[t.dtype] and dump[n]["shape"] == list(t.shape)
                and dump[n]["sha256"] == hashlib.sha256(raw(t)).hexdigest() for n, t in tensors.items())
            expect(f"names, dtypes, shapes and bytes of {len(tensors)} tensors", ok)
            out = os.path.join(tmp, f"ours{k}.safetensors")
            tool(exe, "rewrite", src, out)
            a, b = open(out, "rb").read(), open(src, "rb").read()
            if meta is None or len(meta) == 1:
                expect("our rewrite is byte-identical to the package's file", a == b)
            else:
                def split(x):
                    n = int.from_bytes(x[:8], "little")
                    return json.loads(x[8:8 + n]), x[8 + n:]
                expect("our rewrite has the package's header (as JSON) and data bytes", split(a) == split(b)
                       and len(a) == len(b))

        print("[sharded writer]")
        tensors = sample_tensors(5)
        src = os.path.join(tmp, "all.safetensors")
        save_file(tensors, src, metadata={"format": "pt"})
        sdir = os.path.join(tmp, "sharded")
        os.makedirs(sdir)
        tool(exe, "shard", src, sdir, 200)
        index = json.load(open(os.path.join(sdir, "model.safetensors.index.json")))
        files = sorted(set(index["weight_map"].values()))
        expect("several shards and an index covering every tensor", len(files) > 2 and set(index["weight_map"]) == set(tensors),
               f"{len(files)} shards")
        expect("index total_size", index["metadata"]["total_size"] == sum(len(raw(t)) for t in tensors.values()))
        same = True
        for f in files:
            names = [n for n, s in index["weight_map"].items() if s == f]
            ref = os.path.join(tmp, "ref_" + f)
            save_file({n: tensors[n] for n in names}, ref, metadata={"format": "pt"})
            same = same and open(ref, "rb").read() == open(os.path.join(sdir, f), "rb").read()
            back = load_file(os.path.join(sdir, f))
            same = same and all(torch.equal(back[n], tensors[n]) for n in names)
        expect("each shard byte-identical to save_file of its tensors, and read back equal", same)

        print("[a transformers checkpoint saved in shards]")
        try:
            import hf_models

            d = os.path.join(tmp, "hf")
            model_dir = hf_models.make("qwen2", d, seed=3)
            from transformers import AutoModelForCausalLM

            m = AutoModelForCausalLM.from_pretrained(model_dir)
            sharded = os.path.join(tmp, "hf_sharded")
            m.save_pretrained(sharded, max_shard_size="20KB")
            dump = json.loads(tool(exe, "dump", sharded))
            dump.pop("__metadata__")
            sd = {k: v for k, v in m.state_dict().items() if k != "lm_head.weight" or not m.config.tie_word_embeddings}
            n_files = len([f for f in os.listdir(sharded) if f.endswith(".safetensors")])
            ok = set(dump) == set(sd) and all(dump[n]["sha256"] == hashlib.sha256(raw(t)).hexdigest() for n, t in sd.items())
            expect(f"{len(sd)} tensors read through the index of {n_files} shards", ok and n_files > 1)
        except ImportError as e:
            print(f"  (transformers missing: {e})")
    if failures:
        print(f"{len(failures)} failure(s):\n  " + "\n  ".join(failures))
        return 1
    print("all safetensors checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
