#!/usr/bin/env python3
"""Encode throughput of `hsloth tokenize` against HF `tokenizers`, single thread, same corpus and vocab.

For every shared tokenizer and two corpora (English: the texts of the shared ShareGPT, Alpaca and DPO
files; multilingual: the generated corpus of tests/parity/tokenizer_parity.py), it measures
  * hsloth:           `hsloth tokenize --bench N` (encode one text at a time, in-process timing),
  * HF encode:        Tokenizer.encode(text) one text at a time,
  * HF encode_batch:  Tokenizer.encode_batch(texts) with RAYON_NUM_THREADS=1,
all with add_special_tokens=False, after one untimed warm-up pass (both sides keep a word cache). It
checks that both sides produce the same number of tokens, prints a table (MB/s, Mtokens/s, ratio) and
writes JSON. Benchmarks are not tests: nothing here fails on speed.

  .venv/bin/python bench/tokenizer_bench.py --hsloth build/hsloth [--repeats 5] [--out tokenizer_bench.json]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"  # before tokenizers is imported
os.environ["TOKENIZERS_PARALLELISM"] = "false"

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SEP = "\n__hsloth_item_7f3a__\n"


def english_corpus(data):
    texts = []
    for name in ["sharegpt_500.json", "dpo_en_300.json"]:
        path = os.path.join(data, "datasets", name)
        if not os.path.exists(path):
            continue

        def walk(v):
            if isinstance(v, str):
                if v.strip():
                    texts.append(v)
            elif isinstance(v, list):
                for x in v:
                    walk(x)
            elif isinstance(v, dict):
                for k, x in v.items():
                    if k not in ("id", "from", "role"):
                        walk(x)

        walk(json.load(open(path, encoding="utf-8")))
    path = os.path.join(data, "datasets", "alpaca_tiny.json")
    if os.path.exists(path):
        for row in json.load(open(path, encoding="utf-8")):
            texts += [row[k] for k in ("instruction", "input", "output") if row.get(k)]
    return texts


def multilingual_corpus():
    sys.path.insert(0, os.path.join(ROOT, "tests", "parity"))
    os.environ.setdefault("HSLOTH_BIN", sys.executable)  # the parity module checks these at import
    os.environ.setdefault("HSLOTH_TESTDATA", os.path.join(ROOT, "..", "shared", "data"))
    import tokenizer_parity  # noqa: E402

    return tokenizer_parity.corpus(["<|im_start|>", "<|im_end|>", "<s>", "</s>"])


def hf_copy(path, tmp):
    """HF refuses legacy merges with spaces inside tokens (shared llama2): give it pair merges."""
    from tokenizers import Tokenizer

    try:
        Tokenizer.from_file(path)
        return path
    except Exception:  # noqa: BLE001
        sys.path.insert(0, os.path.join(ROOT, "tests", "parity"))
        import tokenizer_parity

        doc = tokenizer_parity.repaired_for_hf(json.load(open(path, encoding="utf-8")))
        out = os.path.join(tmp, os.path.basename(os.path.dirname(path)) + "-hf.json")
        json.dump(doc, open(out, "w", encoding="utf-8"), ensure_ascii=False)
        return out


def bench_hf(path, texts, repeats):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    for t in texts:  # warm-up (fills the word cache, as our warm-up does)
        tok.encode(t, add_special_tokens=False)
    start = time.perf_counter()
    tokens = 0
    for _ in range(repeats):
        for t in texts:
            tokens += len(tok.encode(t, add_special_tokens=False).ids)
    single = time.perf_counter() - start
    start = time.perf_counter()
    batch_tokens = 0
    for _ in range(repeats):
        batch_tokens += sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))
    batch = time.perf_counter() - start
    return tokens // repeats, single, batch


def bench_ours(binary, path, corpus_file, repeats):
    r = subprocess.run([binary, "tokenize", "--tokenizer", path, "--file", corpus_file, "--split",
                        SEP.replace("\n", "\\n"), "--bench", str(repeats)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"hsloth failed: {r.stderr}")
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hsloth", default=os.environ.get("HSLOTH_BIN", os.path.join(ROOT, "build", "hsloth")))
    ap.add_argument("--data", default=os.environ.get("HSLOTH_TESTDATA", os.path.join(ROOT, "..", "shared", "data")))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tokenizers", default="qwen2.5,qwen3,llama2,tinyllama")
    ap.add_argument("--out", default="tokenizer_bench.json")
    args = ap.parse_args()
    import tokenizers

    corpora = {"english": english_corpus(args.data), "multilingual": multilingual_corpus()}
    rows = []
    with tempfile.TemporaryDirectory(prefix="hsloth-tok-bench-") as tmp:
        for cname, texts in corpora.items():
            corpus_file = os.path.join(tmp, cname + ".txt")
            with open(corpus_file, "w", encoding="utf-8", newline="") as f:
                f.write("".join(t + SEP for t in texts))
            nbytes = sum(len(t.encode("utf-8")) for t in texts)
            for name in args.tokenizers.split(","):
                path = os.path.join(args.data, "tokenizers", name, "tokenizer.json")
                ours = bench_ours(args.hsloth, path, corpus_file, args.repeats)
                hf_tokens, hf_single, hf_batch = bench_hf(hf_copy(path, tmp), texts, args.repeats)
                our_tokens = ours["tokens"] // args.repeats
                mb = nbytes * args.repeats / 1e6
                row = {
                    "tokenizer": name, "corpus": cname, "texts": len(texts), "bytes": nbytes, "tokens": our_tokens,
                    "same_token_count": our_tokens == hf_tokens,
                    "hsloth_mb_s": mb / ours["seconds"], "hf_encode_mb_s": mb / hf_single,
                    "hf_batch1_mb_s": mb / hf_batch,
                    "hsloth_mtok_s": ours["tokens"] / ours["seconds"] / 1e6,
                    "hf_encode_mtok_s": hf_tokens * args.repeats / hf_single / 1e6,
                    "hf_batch1_mtok_s": hf_tokens * args.repeats / hf_batch / 1e6,
                    "hsloth_load_s": ours["load_seconds"],
                }
                row["ratio_vs_encode"] = row["hsloth_mb_s"] / row["hf_encode_mb_s"]
                row["ratio_vs_batch1"] = row["hsloth_mb_s"] / row["hf_batch1_mb_s"]
                rows.append(row)
                print(f"{name:10s} {cname:12s} done", file=sys.stderr)
    head = (f"{'tokenizer':10s} {'corpus':12s} {'MB':>6s} {'hsloth MB/s':>11s} {'HF enc MB/s':>11s} "
            f"{'HF batch1':>10s} {'hsloth Mtok/s':>13s} {'HF Mtok/s':>10s} {'x enc':>6s} {'x batch':>7s} {'same':>5s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['tokenizer']:10s} {r['corpus']:12s} {r['bytes'] / 1e6:6.2f} {r['hsloth_mb_s']:11.2f} "
              f"{r['hf_encode_mb_s']:11.2f} {r['hf_batch1_mb_s']:10.2f} {r['hsloth_mtok_s']:13.3f} "
              f"{r['hf_encode_mtok_s']:10.3f} {r['ratio_vs_encode']:6.2f} {r['ratio_vs_batch1']:7.2f} "
              f"{'yes' if r['same_token_count'] else 'NO':>5s}")
    result = {"tokenizers_version": tokenizers.__version__, "machine": platform.platform(),
              "cpu": platform.processor(), "repeats": args.repeats, "threads": 1, "rows": rows}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
