#!/usr/bin/env python3
"""Prep throughput: `hsloth prep` at 1 and 2 MPI ranks (and an HF baseline) on the same records.

Builds a JSONL input by repeating the shared ShareGPT and Alpaca records (--repeat times, records made
unique by a counter so nothing is trivially cached), then times
  * mpiexec -n N hsloth prep --tokenizer T (wall time of the whole command: start-up, first pass, tokenize,
    gather, sort, HDF5 write) and the tokenize phase rate hsloth reports,
  * the same work in Python with HF transformers' apply_chat_template + HF tokenizers encode_batch (one
    process; the Rust tokenizer may use several threads), for scale.
Prints a table and writes JSON (--json). Not a test: nothing here asserts.
usage: prep_throughput.py [--bin build/hsloth] [--ranks 1 2] [--repeat 20] [--tokenizer qwen2.5] [--json out.json]
"""
import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("HSLOTH_BIN", os.path.join(HERE, "..", "build", "hsloth")))
    ap.add_argument("--data", default=os.environ.get("HSLOTH_TESTDATA", os.path.join(HERE, "..", "..", "shared", "data")))
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--tokenizer", default="qwen2.5")
    ap.add_argument("--mpiexec", default="mpiexec")
    ap.add_argument("--json", default="prep_throughput.json")
    ap.add_argument("--no-hf", action="store_true", help="skip the HF baseline")
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="hs-bench-prep-")
    try:
        share = json.load(open(os.path.join(a.data, "datasets", "sharegpt_500.json"), encoding="utf-8"))
        alpaca = json.load(open(os.path.join(a.data, "datasets", "alpaca_tiny.json"), encoding="utf-8"))
        src = os.path.join(tmp, "input.jsonl")
        records = []
        for k in range(a.repeat):
            for r in share:
                conv = [dict(m) for m in r["conversations"]]
                conv[0]["value"] = f"[{k}] " + conv[0]["value"]
                records.append({"conversations": conv})
            for r in alpaca:
                records.append({"conversations": [
                    {"from": "human", "value": f"[{k}] " + r["instruction"] + ("\n\n" + r["input"] if r["input"] else "")},
                    {"from": "gpt", "value": r["output"]}]})
        with open(src, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        size = os.path.getsize(src)
        tok_dir = os.path.join(a.data, "tokenizers", a.tokenizer)
        rows = []
        for n in a.ranks:
            out = os.path.join(tmp, f"out{n}")
            cmd = [a.mpiexec, "-n", str(n), "--oversubscribe", a.bin, "prep", "--input", src, "--tokenizer", tok_dir,
                   "--out", out]
            t = time.perf_counter()
            ru = resource.getrusage(resource.RUSAGE_CHILDREN)
            r = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t
            ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (ru2.ru_utime - ru.ru_utime) + (ru2.ru_stime - ru.ru_stime)
            if r.returncode != 0:
                print(r.stderr[-3000:])
                sys.exit(1)
            m = json.load(open(os.path.join(out, "manifest.json")))
            phase = re.search(r"throughput on \d+ ranks?: ([\d.]+[kMG]?) records/s, ([\d.]+[kMG]?) tokens/s[^\n]*", r.stderr)
            rows.append({"what": f"hsloth prep -np {n}", "ranks": n, "records": len(records),
                         "samples": m["totals"]["samples"], "tokens": m["totals"]["tokens"], "wall_s": wall,
                         "samples_per_s": m["totals"]["samples"] / wall, "tokens_per_s": m["totals"]["tokens"] / wall,
                         "cpu_s": cpu, "tokenize_phase": phase.group(0) if phase else ""})
        if not a.no_hf:
            try:
                from tokenizers import Tokenizer
                from transformers import AutoTokenizer
                hf = AutoTokenizer.from_pretrained(tok_dir)
                raw = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
                role = {"human": "user", "gpt": "assistant"}
                t = time.perf_counter()
                texts = [hf.apply_chat_template([{"role": role[m["from"]], "content": m["value"]}
                                                 for m in r["conversations"]], tokenize=False) for r in records]
                encs = raw.encode_batch(texts, add_special_tokens=False)
                wall = time.perf_counter() - t
                tokens = sum(len(e.ids) for e in encs)
                rows.append({"what": "HF apply_chat_template + tokenizers encode_batch (no mask, no write)",
                             "ranks": 1, "records": len(records), "samples": len(encs), "tokens": tokens,
                             "wall_s": wall, "samples_per_s": len(encs) / wall, "tokens_per_s": tokens / wall,
                             "cpu_s": None, "tokenize_phase": ""})
            except ImportError as e:
                print(f"(HF baseline skipped: {e})")
        print(f"input: {len(records)} records, {size / 1e6:.1f} MB JSONL, tokenizer {a.tokenizer}, "
              f"{os.cpu_count()} CPU threads")
        try:
            load = "load average %.1f %.1f %.1f" % os.getloadavg()
        except OSError:
            load = ""
        print(f"(machine {load}: on a busy machine ranks share cores and wall times mean little; cpu s = CPU "
              f"seconds of all processes, tokens/cpu-s = tokens per CPU second)")
        print(f"{'what':<70} {'wall s':>8} {'cpu s':>7} {'samples/s':>10} {'tokens/s':>11} {'tok/cpu-s':>10}")
        for r in rows:
            cpu = f"{r['cpu_s']:7.2f}" if r["cpu_s"] else f"{'':>7}"
            per_cpu = f"{r['tokens'] / r['cpu_s']:10.0f}" if r["cpu_s"] else f"{'':>10}"
            print(f"{r['what']:<70} {r['wall_s']:8.2f} {cpu} {r['samples_per_s']:10.0f} {r['tokens_per_s']:11.0f} "
                  f"{per_cpu}")
            if r["tokenize_phase"]:
                print(f"    ({r['tokenize_phase']})")
        with open(a.json, "w") as f:
            json.dump({"input_records": len(records), "input_bytes": size, "tokenizer": a.tokenizer,
                       "cpu_threads": os.cpu_count(), "load": load, "rows": rows}, f, indent=2)
        print(f"wrote {a.json}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
