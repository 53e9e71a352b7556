#!/usr/bin/env python3
"""`mpirun -np N hsloth prep` must write byte-identical shards and manifest for N = 1, 2, 3.

Inputs: the shared alpaca_tiny.json and sharegpt_500.json plus a generated .jsonl.gz holding well-formed
ShareGPT records, a known number of malformed lines and one line with invalid UTF-8, run with
--on-error skip, so that per-rank counts have to be merged too. The expected counts come from how this
script built the file, not from hsloth. Exit 77 = skipped (shared data missing), 1 = failure.
usage: prep_identical.py MPIEXEC
"""
import filecmp
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile

BIN = os.environ.get("HSLOTH_BIN", "")
HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("HSLOTH_TESTDATA") or os.path.join(HERE, "..", "..", "..", "shared", "data")
if not os.path.isdir(os.path.join(DATA, "datasets")) or not os.path.isdir(os.path.join(DATA, "tokenizers")):
    print(f"SKIP: shared test data not found at {DATA}")
    sys.exit(77)
if not BIN or not os.path.exists(BIN):
    print(f"FAIL: hsloth binary not found ($HSLOTH_BIN={BIN!r})")
    sys.exit(1)
MPIEXEC = sys.argv[1] if len(sys.argv) > 1 else "mpiexec"


def make_gz(path):
    rows = json.load(open(os.path.join(DATA, "datasets", "sharegpt_500.json"), encoding="utf-8"))[:120]
    lines, malformed = [], 0
    for i, r in enumerate(rows):
        lines.append(json.dumps({"conversations": r["conversations"]}).encode())
        if i % 17 == 5:
            lines.append(b'{"conversations": [{"from": "human", "value": "unterminated')
            malformed += 1
        if i % 29 == 7:
            lines.append(b'{"conversations": [{"from": "tool", "value": "x"}]}')  # unknown role
            malformed += 1
    bad = {"conversations": [{"from": "human", "value": "caf\u00e9 BAD"}, {"from": "gpt", "value": "ok"}]}
    lines.append(json.dumps(bad, ensure_ascii=False).encode().replace(b"BAD", b"\xff\xfe"))
    with gzip.open(path, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    return len(rows) + 1, malformed


def main():
    tmp = tempfile.mkdtemp(prefix="hs-prep-mpi-")
    ok = True
    try:
        gz = os.path.join(tmp, "extra.jsonl.gz")
        good, malformed = make_gz(gz)
        inputs = [os.path.join(DATA, "datasets", "alpaca_tiny.json"), os.path.join(DATA, "datasets", "sharegpt_500.json"),
                  gz]
        outs = {}
        for n in (1, 2, 3):
            out = os.path.join(tmp, f"np{n}")
            cmd = [MPIEXEC, "-n", str(n), "--oversubscribe", BIN, "prep", "--input", *inputs, "--tokenizer",
                   os.path.join(DATA, "tokenizers", "qwen2.5"), "--out", out, "--on-error", "skip",
                   "--shard-tokens", "20000", "--compress", "3"]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                print(f"FAIL: -np {n} exited {r.returncode}:\n{r.stderr[-3000:]}")
                return False
            outs[n] = out
            print(f"-np {n}: " + " | ".join(l for l in r.stderr.splitlines() if "throughput" in l or "wrote" in l))
        files = sorted(os.listdir(outs[1]))
        if "manifest.json" not in files or not any(f.endswith(".h5") for f in files):
            print(f"FAIL: unexpected output files {files}")
            return False
        for n in (2, 3):
            other = sorted(os.listdir(outs[n]))
            if other != files:
                print(f"FAIL: -np {n} wrote {other}, -np 1 wrote {files}")
                ok = False
                continue
            _, mismatch, errors = filecmp.cmpfiles(outs[1], outs[n], files, shallow=False)
            if mismatch or errors:
                print(f"FAIL: -np {n} differs from -np 1 in {mismatch + errors}")
                ok = False
            else:
                print(f"ok: -np {n} output is byte-identical to -np 1 ({len(files)} files)")
        prep = json.load(open(os.path.join(outs[1], "manifest.json")))["prep"]
        want_records = 100 + 500 + good + malformed
        if prep["input_records"] != want_records or prep["skipped"]["malformed"] != malformed or \
                prep["utf8_repaired"] != 1 or prep["written"] != want_records - malformed:
            print(f"FAIL: accounting {prep}; expected {want_records} records, {malformed} malformed, 1 repaired")
            ok = False
        else:
            print(f"ok: {want_records} records = {prep['written']} written + {malformed} malformed; 1 UTF-8 repair")
    finally:
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"(outputs kept in {tmp})")
    return ok


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
