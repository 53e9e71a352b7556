"""Damaged shards are found when train and eval start, not at the step that reads the sample (issue #10).

A tiny random Llama (hf_models.py) and the demo task's shards (launch/demo/make_demo.py, `hsloth prep`).
One byte in the middle of an input_ids chunk of a shard is flipped (h5py finds the chunk, so the damage is
in token data that only the batch that reads it would touch). Then:
1. `hsloth train` stops before step 1 with an error naming the shard file, its crc32 and the fix
   (re-run prep); no training step is logged.
2. `hsloth eval` on the same folder does the same.
3. With a manifest of an older hsloth (no crc32), train still stops before step 1 naming the shard: every
   chunk is read through HDF5's Fletcher-32 checksums at start-up, and a warning says checksums are absent.
4. The undamaged folder trains (the check does not refuse good data).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("HSLOTH_SOURCE", os.path.dirname(os.path.dirname(HERE)))
BIN = os.environ.get("HSLOTH_BIN", "")
sys.path.insert(0, HERE)
failures = []


def check(cond, what, detail=""):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        if detail:
            print(detail)
        failures.append(what)


def hsloth(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=600)


def train(d, run, data):
    return hsloth("train", "--model.path", f"{d}/model", "--data.train", data, "--run.dir", f"{d}/{run}",
                  "--lora.r", "4", "--train.max_steps", "2", "--train.tokens_per_batch", "4096", "--log.every", "1")


def steps_logged(d, run):
    path = f"{d}/{run}/metrics.jsonl"
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for x in f if x.strip() and "loss" in json.loads(x) and "step" in json.loads(x))


def main():
    if not BIN or not os.path.exists(BIN):
        print("hsloth binary not found; skipping")
        return 77
    try:
        import h5py
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        print(f"oracle missing ({e}); skipping")
        return 77
    import hf_models

    d = tempfile.mkdtemp(prefix="hs-shard-damage-")
    try:
        hf_models.make_with_demo_data(d, {"model": {}}, train=200, evals=4)
        r = hsloth("prep", "--input", f"{d}/demo/train.jsonl", "--tokenizer", f"{d}/model", "--out", f"{d}/good",
                   "--template", "chatml")
        if r.returncode != 0:
            print(r.stdout, r.stderr)
            return 1

        # 4 first: good data trains.
        r = train(d, "good-run", f"{d}/good")
        check(r.returncode == 0 and steps_logged(d, "good-run") == 2, "undamaged shards train (2 steps)",
              r.stdout + r.stderr)

        bad = f"{d}/bad"
        shutil.copytree(f"{d}/good", bad)
        shard = f"{bad}/shard-00000.h5"
        with h5py.File(shard, "r") as f:
            ds = f["input_ids"]
            n_chunks = ds.id.get_num_chunks()
            info = ds.id.get_chunk_info(n_chunks - 1)  # the longest samples: read late in a length-sorted set
            at = info.byte_offset + info.size // 2
        with open(shard, "r+b") as f:
            f.seek(at)
            b = f.read(1)
            f.seek(at)
            f.write(bytes([b[0] ^ 0x5A]))

        # 1. train stops before step 1, naming the shard and the fix.
        r = train(d, "bad-run", bad)
        out = r.stdout + r.stderr
        check(r.returncode == 1, f"train on a damaged shard exits 1 (got {r.returncode})", out)
        check(f"{shard}: crc32 is " in out and "damaged after prep" in out, "the error names the shard and crc32",
              out)
        check("re-run hsloth prep" in out, "the error says how to fix it", out)
        check(steps_logged(d, "bad-run") == 0, "no training step ran", out)
        check(f"{shard} sample" not in out, "found at start-up, not by a sample read", out)

        # 2. eval the same.
        r = hsloth("eval", "--model", f"{d}/model", "--data", bad)
        out = r.stdout + r.stderr
        check(r.returncode == 1 and f"{shard}: crc32 is " in out, "eval on a damaged shard names it", out)

        # 3. An older manifest without checksums: HDF5's chunk checksums, read at start-up.
        with open(f"{bad}/manifest.json") as f:
            m = json.load(f)
        for s in m["shards"]:
            s.pop("crc32", None)
        with open(f"{bad}/manifest.json", "w") as f:
            json.dump(m, f)
        r = train(d, "old-run", bad)
        out = r.stdout + r.stderr
        check(r.returncode == 1 and shard in out and "damaged" in out,
              "older manifest: train names the damaged shard", out)
        # Found by the start-up read of the whole shard, not by reading a sample for a step
        # ("shard-00000.h5 sample N: ..."), and before any step.
        check(f"{shard}: cannot read input_ids" in out and f"{shard} sample" not in out,
              "older manifest: found at start-up, not by a sample read", out)
        check(steps_logged(d, "old-run") == 0, "older manifest: no step logged", out)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
