#!/usr/bin/env python3
"""Shards written by `hsloth prep`, read back with h5py and checked against HF oracles.

For alpaca_tiny.json and sharegpt_500.json with the Qwen2.5 and Llama-2 tokenizers, this script
  * runs `hsloth prep` (several shards, with and without compression, response and full loss masks),
  * reads every shard with h5py: attributes (magic, version, tokenizer sha256 = sha256 of tokenizer.json
    computed here, vocab size = HF tokenizers' vocab with added tokens, special ids), dataset types, offsets
    against lengths, length order, and manifest.json (counts, sha256 of each file, the record accounting),
  * renders every record with HF transformers' apply_chat_template (the model's own template; for Llama-2
    the meta-llama/Llama-2-7b-chat-hf template), encodes it with HF `tokenizers`, sorts the samples by
    (length, source order) and requires our token ids to be identical, our samples to decode (HF `tokenizers`)
    back to the rendered text, and our loss masks to equal masks built here from HF's token offsets and the
    assistant spans found by rendering conversation prefixes,
  * for plain text records (--format text, the "text" field of alpaca_tiny.json), requires HF tokenizers'
    encode(text, add_special_tokens=True) + EOS and a mask of all but the first token,
  * checks that stock h5dump reads the files,
  * and compares `hsloth inspect --json` with the same statistics computed here from h5py's lengths.
Exit 77 = skipped (oracle packages or shared data missing), 1 = failure.
"""
import bisect
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile


def skip(msg):
    print(f"SKIP: {msg}")
    sys.exit(77)


FAILURES = []


def fail(msg):
    FAILURES.append(msg)
    print(f"FAIL: {msg}")


BIN = os.environ.get("HSLOTH_BIN", "")
HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("HSLOTH_TESTDATA") or os.path.join(HERE, "..", "..", "..", "shared", "data")
if not os.path.isdir(os.path.join(DATA, "datasets")):
    skip(f"shared test data not found at {DATA}")
try:
    import h5py
    import numpy as np
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer
except ImportError as e:
    skip(f"oracle packages not importable ({e})")
if not BIN or not os.path.exists(BIN):
    print(f"FAIL: hsloth binary not found ($HSLOTH_BIN={BIN!r})")
    sys.exit(1)

from oracle_templates import LLAMA2  # noqa: E402  (meta-llama/Llama-2-7b-chat-hf template)


def load_records(name):
    with open(os.path.join(DATA, "datasets", name), encoding="utf-8") as f:
        rows = json.load(f)
    convs = []
    for r in rows:
        if "instruction" in r:  # alpaca: one user turn "instruction\n\ninput" for chat families
            user = r["instruction"] + ("\n\n" + r["input"] if r.get("input") else "")
            convs.append([{"role": "user", "content": user}, {"role": "assistant", "content": r["output"]}])
        else:
            role = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
            convs.append([{"role": role[m["from"]], "content": m["value"]} for m in r["conversations"]])
    return convs


def load_raw(folder):
    """HF `tokenizers` on folder/tokenizer.json. The shared Llama-2 file stores a few merges as ambiguous
    strings ("   " = " " + " ") that this `tokenizers` version refuses to parse; those are split where both
    halves and their concatenation are vocabulary tokens (exactly one such split exists for each)."""
    path = os.path.join(folder, "tokenizer.json")
    try:
        return Tokenizer.from_file(path)
    except Exception:
        j = json.load(open(path, encoding="utf-8"))
        vocab = j["model"]["vocab"]

        def split(m):
            if not isinstance(m, str) or m.count(" ") == 1:
                return m.split(" ") if isinstance(m, str) else m
            cuts = [i for i, c in enumerate(m) if c == " " and m[:i] in vocab and m[i + 1:] in vocab
                    and m[:i] + m[i + 1:] in vocab]
            assert len(cuts) == 1, f"cannot split merge {m!r}"
            return [m[: cuts[0]], m[cuts[0] + 1:]]

        j["model"]["merges"] = [split(m) for m in j["model"]["merges"]]
        return Tokenizer.from_str(json.dumps(j))


def load_hf(folder, raw):
    """transformers tokenizer for apply_chat_template (built on `raw` when the folder does not load)."""
    try:
        return AutoTokenizer.from_pretrained(folder)
    except Exception:
        from transformers import PreTrainedTokenizerFast
        cfg = json.load(open(os.path.join(folder, "tokenizer_config.json"), encoding="utf-8"))
        tok = lambda k: cfg[k]["content"] if isinstance(cfg.get(k), dict) else cfg.get(k)  # noqa: E731
        return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token=tok("bos_token"), eos_token=tok("eos_token"),
                                       unk_token=tok("unk_token"))


class Family:
    def __init__(self, tok_dir, template_arg, jinja, trailer, gen_prompt):
        self.dir = os.path.join(DATA, "tokenizers", tok_dir)
        self.template_arg = template_arg
        self.raw = load_raw(self.dir)
        self.hf = load_hf(self.dir, self.raw)
        self.jinja = jinja
        self.trailer = trailer        # text after an assistant turn's end-of-turn token (not trained)
        self.gen_prompt = gen_prompt  # whether the template has a generation prompt (assistant header)

    def render(self, msgs, gen=False):
        kw = {"chat_template": self.jinja} if self.jinja else {}
        return self.hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen, **kw)

    def expected(self, msgs, loss, last_only):
        text = self.render(msgs)
        enc = self.raw.encode(text, add_special_tokens=False)
        spans = []  # character ranges of assistant turns, from renders of the conversation's prefixes
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            before = self.render(msgs[:i], gen=self.gen_prompt)
            through = self.render(msgs[: i + 1])
            assert text.startswith(through) and through.startswith(before), "prefix renders are not prefixes"
            assert through.endswith(self.trailer)
            spans.append((len(before), len(through) - len(self.trailer)))
        if last_only:
            spans = spans[-1:]
        mask = []
        for t, (b, e) in enumerate(enc.offsets):
            if loss == "full":
                mask.append(1)
            else:
                mask.append(int(e > b and any(b < f and s < e for s, f in spans)))
        mask[0] = 0
        return text, list(enc.ids), mask


FAMILIES = {
    "qwen2.5": lambda: Family("qwen2.5", "auto", None, "\n", True),
    "llama2": lambda: Family("llama2", "llama2", LLAMA2, "", False),
}

# dataset, tokenizer, loss, last_turn_only, extra prep flags
CASES = [
    ("alpaca_tiny.json", "qwen2.5", "response", False, ["--shard-tokens", "4000"]),
    ("sharegpt_500.json", "qwen2.5", "response", True, ["--shard-tokens", "20000", "--compress", "4"]),
    ("alpaca_tiny.json", "llama2", "full", False, ["--compress", "1"]),
    ("sharegpt_500.json", "llama2", "response", False, ["--shard-tokens", "30000"]),
    ("text:alpaca_tiny.json", "llama2", "response", False, []),  # text records: BOS + text + EOS, full loss
    ("text:alpaca_tiny.json", "qwen2.5", "response", False, ["--compress", "9"]),  # no BOS in Qwen
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def attr_str(v):
    return v.decode() if isinstance(v, (bytes, np.bytes_)) else str(v)


def check_case(tmp, dataset, tok_name, loss, last_only, extra):
    failures_before = len(FAILURES)
    text_mode = dataset.startswith("text:")  # the "text" field of a dataset's records, as --format text input
    label = f"{dataset} + {tok_name} ({loss}{', last turn' if last_only else ''})"
    fam = FAMILIES[tok_name]()
    out = os.path.join(tmp, f"{dataset.replace(':', '-')}-{tok_name}-{loss}")
    if text_mode:
        rows = json.load(open(os.path.join(DATA, "datasets", dataset[5:]), encoding="utf-8"))
        texts = [r["text"] for r in rows]
        source = os.path.join(tmp, dataset[5:] + ".text.jsonl")
        with open(source, "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"text": t}) + "\n" for t in texts)
    else:
        source = os.path.join(DATA, "datasets", dataset)
    cmd = [BIN, "prep", "--input", source, "--tokenizer", fam.dir, "--out", out, "--template", fam.template_arg,
           "--loss", loss] + (["--last-turn-only"] if last_only else []) + extra
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{label}: hsloth prep exited {r.returncode}:\n{r.stderr[-3000:]}")
        return None
    expected = []
    if text_mode:  # the tokenizer's own special tokens, then EOS; every token but the first trained
        eos = fam.raw.token_to_id(fam.hf.eos_token)
        for idx, text in enumerate(texts):
            ids = list(fam.raw.encode(text, add_special_tokens=True).ids) + [eos]
            expected.append((len(ids), idx, text, ids, [0] + [1] * (len(ids) - 1)))
        convs = texts
    else:
        convs = load_records(dataset)
        for idx, msgs in enumerate(convs):
            text, ids, mask = fam.expected(msgs, loss, last_only)
            expected.append((len(ids), idx, text, ids, mask))
    expected.sort(key=lambda e: (e[0], e[1]))  # the shard order: length, then source order

    manifest = json.load(open(os.path.join(out, "manifest.json")))
    tok_sha = sha256(os.path.join(fam.dir, "tokenizer.json"))
    prep = manifest["prep"]
    if prep["input_records"] != len(convs) or prep["written"] != len(convs) or any(prep["skipped"].values()):
        fail(f"{label}: manifest accounting {prep} for {len(convs)} records")
    if manifest["tokenizer"]["sha256"] != tok_sha:
        fail(f"{label}: manifest tokenizer sha256 {manifest['tokenizer']['sha256']} != {tok_sha}")
    if len(manifest["shards"]) < 2 and "--shard-tokens" in extra:
        fail(f"{label}: expected several shards, got {len(manifest['shards'])}")

    got = []
    total = {"samples": 0, "tokens": 0, "trained": 0}
    vocab = fam.raw.get_vocab_size(with_added_tokens=True)
    src_sha = sha256(source)
    for k, entry in enumerate(manifest["shards"]):
        path = os.path.join(out, entry["file"])
        if sha256(path) != entry["sha256"]:
            fail(f"{label}: {entry['file']} sha256 differs from the manifest")
        with h5py.File(path, "r") as f:
            a = f.attrs
            checks = {
                "magic": (attr_str(a["magic"]), "hsloth-shard"),
                "version": (int(a["version"]), 1),
                "tokenizer_sha256": (attr_str(a["tokenizer_sha256"]), tok_sha),
                "vocab_size": (int(a["vocab_size"]), vocab),
                "eos_id": (int(a["eos_id"]), fam.raw.token_to_id(fam.hf.eos_token)),
                "bos_id": (int(a["bos_id"]),
                           fam.raw.token_to_id(fam.hf.bos_token) if fam.hf.bos_token is not None else -1),
                "loss_policy": (attr_str(a["loss_policy"]), "full" if loss == "full" else
                                ("response_last_turn" if last_only else "response")),
                "template": (attr_str(a["template"]),
                             "none" if text_mode else ("qwen2.5" if tok_name == "qwen2.5" else "llama2")),
                "formats": (attr_str(a["formats"]), "text" if text_mode else
                            ("alpaca" if "alpaca" in dataset else "sharegpt")),
                "source_sha256": ([attr_str(x) for x in a["source_sha256"]], [src_sha]),
                "source_names": ([attr_str(x) for x in a["source_names"]], [os.path.basename(source)]),
                "shard_index": (int(a["shard_index"]), k),
                "shard_count": (int(a["shard_count"]), len(manifest["shards"])),
            }
            for key, (have, want) in checks.items():
                if have != want:
                    fail(f"{label}: {entry['file']} attribute {key} = {have!r}, expected {want!r}")
            dtypes = {"input_ids": np.int32, "loss_mask": np.uint8, "offsets": np.int64, "lengths": np.int32,
                      "trained": np.int32}
            for name, dt in dtypes.items():
                if f[name].dtype != dt:
                    fail(f"{label}: {name} has dtype {f[name].dtype}, expected {np.dtype(dt)}")
                if f[name].chunks is None:
                    fail(f"{label}: {name} is not chunked")
            ids, mask = f["input_ids"][:], f["loss_mask"][:]
            off, lens, trained = f["offsets"][:], f["lengths"][:], f["trained"][:]
            n = len(lens)
            if off[0] != 0 or off[-1] != len(ids) or len(off) != n + 1 or len(mask) != len(ids):
                fail(f"{label}: offsets/sizes inconsistent in {entry['file']}")
            if not np.array_equal(np.diff(off), lens):
                fail(f"{label}: offsets do not match lengths in {entry['file']}")
            if np.any(np.diff(lens) < 0):
                fail(f"{label}: {entry['file']} is not sorted by length")
            if int(a["num_samples"]) != n or int(a["num_tokens"]) != len(ids) or \
                    int(a["num_trained"]) != int(mask.sum()):
                fail(f"{label}: count attributes disagree with the datasets in {entry['file']}")
            if entry["samples"] != n or entry["tokens"] != len(ids) or entry["trained"] != int(mask.sum()):
                fail(f"{label}: manifest entry disagrees with {entry['file']}")
            for i in range(n):
                s, e = off[i], off[i + 1]
                got.append((ids[s:e].tolist(), mask[s:e].tolist()))
                if int(trained[i]) != int(mask[s:e].sum()):
                    fail(f"{label}: trained[{i}] in {entry['file']} != mask sum")
            total["samples"] += n
            total["tokens"] += len(ids)
            total["trained"] += int(mask.sum())
        dump = subprocess.run(["h5dump", "-H", path], capture_output=True, text=True) if shutil.which("h5dump") \
            else None
        if dump is not None and (dump.returncode != 0 or 'DATASET "input_ids"' not in dump.stdout):
            fail(f"{label}: h5dump cannot read {entry['file']}: {dump.stderr[-500:]}")
    for key in total:
        if manifest["totals"][key] != total[key]:
            fail(f"{label}: manifest totals[{key}] = {manifest['totals'][key]}, shards hold {total[key]}")

    if len(got) != len(expected):
        fail(f"{label}: {len(got)} samples in the shards, {len(expected)} expected")
        return out
    bos = fam.raw.token_to_id(fam.hf.bos_token) if fam.hf.bos_token is not None else None
    eos = fam.raw.token_to_id(fam.hf.eos_token)

    def decode_record(ids):  # text records: the text between the added BOS (if any) and the appended EOS
        if text_mode:
            ids = ids[1 if ids and ids[0] == bos else 0: -1] if ids and ids[-1] == eos else None
            if ids is None:
                return None
        return fam.raw.decode(ids, skip_special_tokens=False)

    bad_ids = bad_text = bad_mask = 0
    for (ids, mask), (_, idx, text, want_ids, want_mask) in zip(got, expected):
        if ids != want_ids:
            bad_ids += 1
            if bad_ids <= 3:
                fail(f"{label}: record {idx}: token ids differ from HF tokenizers\n  ours {ids[:40]}\n"
                     f"  HF   {want_ids[:40]}")
            continue
        decoded = decode_record(ids)
        if decoded != text and decoded != fam.raw.decode(want_ids, skip_special_tokens=False):
            bad_text += 1
            if bad_text <= 3:
                fail(f"{label}: record {idx} decodes to {decoded[:200]!r}, HF rendered {text[:200]!r}")
        if mask != want_mask:
            bad_mask += 1
            if bad_mask <= 3:
                diff = [t for t in range(len(mask)) if mask[t] != want_mask[t]]
                fail(f"{label}: record {idx}: loss mask differs at tokens {diff[:10]} "
                     f"({[fam.raw.id_to_token(ids[t]) for t in diff[:10]]})")
    exact_text = sum(1 for (ids, _), e in zip(got, expected) if decode_record(ids) == e[2])
    status = "ok" if len(FAILURES) == failures_before else "FAILED"
    print(f"{status}: {label}: {len(got)} samples in {len(manifest['shards'])} shards, {total['tokens']} tokens, "
          f"{total['trained']} trained; ids {len(got) - bad_ids}/{len(got)} equal to HF, masks "
          f"{len(got) - bad_mask}/{len(got)} equal, {exact_text}/{len(got)} decode to the exact rendered text")
    return out


# ---- hsloth inspect against statistics computed here ---------------------------------------------------

def padded_slots(lengths, n):
    slots, count, longest, batches = 0, 0, 0, 0
    for length in lengths:
        if count and (count + 1) * max(longest, length) > n:
            slots, batches, count, longest = slots + count * longest, batches + 1, 0, 0
        count, longest = count + 1, max(longest, length)
        if longest > n:
            slots, batches, count, longest = slots + count * longest, batches + 1, 0, 0
    if count:
        slots, batches = slots + count * longest, batches + 1
    return batches, slots


def packed_slots(lengths, n):
    free, rows, slots = [], 0, 0  # sorted remaining capacities
    for length in sorted(lengths, reverse=True):
        if length >= n:
            rows, slots = rows + 1, slots + max(length, n)
            continue
        i = bisect.bisect_left(free, length)
        if i == len(free):
            rows, slots = rows + 1, slots + n
            bisect.insort(free, n - length)
        else:
            left = free.pop(i) - length
            bisect.insort(free, left)
    return rows, slots


def check_inspect(out, n=1024):
    r = subprocess.run([BIN, "inspect", out, "--json", "--verify", "--tokens-per-batch", str(n)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        fail(f"inspect {out}: exit {r.returncode}: {r.stderr[-2000:]}")
        return
    j = json.loads(r.stdout)
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    lengths, trained = [], []
    for entry in manifest["shards"]:
        with h5py.File(os.path.join(out, entry["file"]), "r") as f:
            lengths += f["lengths"][:].tolist()
            trained += f["trained"][:].tolist()
    s = sorted(lengths)
    tokens = sum(lengths)
    want = {
        "samples": len(lengths), "tokens": tokens, "trained": sum(trained),
        "min": s[0], "max": s[-1],
        "p50": s[max(1, -(-50 * len(s) // 100)) - 1], "p90": s[max(1, -(-90 * len(s) // 100)) - 1],
        "p99": s[max(1, -(-99 * len(s) // 100)) - 1],
        "over_budget": sum(1 for x in s if x > n),
    }
    have = {"samples": j["samples"], "tokens": j["tokens"], "trained": j["trained"], "min": j["length"]["min"],
            "max": j["length"]["max"], "p50": j["length"]["p50"], "p90": j["length"]["p90"],
            "p99": j["length"]["p99"], "over_budget": j["over_budget"]}
    if have != want:
        fail(f"inspect {out}: {have} != {want}")
    if abs(j["trained_fraction"] - sum(trained) / tokens) > 1e-12:
        fail(f"inspect {out}: trained_fraction {j['trained_fraction']}")
    hist = {}  # octaves [2^k, 2^(k+1)), cut into 4 equal bins from 4 up
    for x in s:
        octave = 1 << (x.bit_length() - 1)
        width = octave // 4 if octave >= 4 else octave
        lo = octave + (x - octave) // width * width
        hist[lo] = hist.get(lo, 0) + 1
    got_hist = {b["lo"]: b["count"] for b in j["histogram"] if b["count"]}
    if got_hist != hist:
        fail(f"inspect {out}: histogram {got_hist} != {hist}")
    gb, gs = padded_slots(s, n)
    pb, ps = packed_slots(lengths, n)
    for key, (b, sl) in {"padded_grouped": (gb, gs), "packed": (pb, ps)}.items():
        if j[key]["batches"] != b or j[key]["slots"] != sl or j[key]["padding"] != sl - tokens:
            fail(f"inspect {out}: {key} {j[key]} != batches {b}, slots {sl}")
    if j["padded_shuffled"]["slots"] - j["padded_shuffled"]["padding"] != tokens:
        fail(f"inspect {out}: padded_shuffled does not hold every token once")
    text = subprocess.run([BIN, "inspect", out, "--tokens-per-batch", str(n)], capture_output=True, text=True)
    if text.returncode != 0 or "waste" not in text.stdout or "histogram" not in text.stdout:
        fail(f"inspect {out} (text): exit {text.returncode}")
    print(f"ok: inspect {os.path.basename(out)}: packed waste {j['packed']['waste']:.3f}, padded grouped "
          f"{j['padded_grouped']['waste']:.3f}, shuffled {j['padded_shuffled']['waste']:.3f} at N={n}")


def main():
    tmp = tempfile.mkdtemp(prefix="hs-shards-parity-")
    try:
        outs = [check_case(tmp, *c) for c in CASES]
        for out in outs:
            if out:
                check_inspect(out)
    finally:
        if not FAILURES:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"(outputs kept in {tmp})")
    if FAILURES:
        print(f"{len(FAILURES)} failure(s)")
        sys.exit(1)
    print("all shard parity checks passed")


if __name__ == "__main__":
    main()
