#!/usr/bin/env python
"""`hsloth prep` on the input formats and template checks of issue #10, end to end through the binary.

  * ShareGPT tool data (tests/fixtures/inputs/glaive_toolcall.json, LLaMA-Factory's glaive_toolcall layout):
    the shards' token ids must equal HF `tokenizers` encoding transformers' apply_chat_template(messages,
    tools=...) of the same records, mapped here independently the way LLaMA-Factory/transformers do
    (function_call -> assistant tool_calls, observation -> tool, tools JSON string -> {"type": "function",
    "function": schema}); for Qwen2.5 (auto from the tokenizer) and Llama 3.1 (its .jinja; run with the
    Qwen2.5 tokenizer and --allow-split-markers, since no Llama 3 tokenizer is in the test data). Tool calls
    are trained, tool results are not.
  * Markers: a template whose special markers the tokenizer splits stops prep, naming marker, template and
    tokenizer (Qwen2.5 + llama3, Llama-2 + chatml); --allow-split-markers lets it through.
  * Refused by name, nothing written: DPO data (datasets/dpo_en_300.json), OASST message trees; read as one
    record: a pretty-printed single-object file (Axolotl conversation.json); auto on Qwen2.5 -> qwen2.5.
  * 20 MiB of blank lines cost linear time (was ~45 s).
Exit 0 = all good, 1 = a failure, 77 = skipped (data or oracle packages missing).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def skip(msg):
    print(f"SKIP: {msg}")
    sys.exit(77)


BIN = os.environ.get("HSLOTH_BIN", "")
HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures", "inputs")
DATA = os.environ.get("HSLOTH_TESTDATA") or os.path.join(HERE, "..", "..", "..", "shared", "data")
if not os.path.isdir(os.path.join(DATA, "tokenizers")):
    skip(f"shared test data not found at {DATA}")
try:
    import h5py
    from transformers import AutoTokenizer
except ImportError as e:
    skip(f"oracle packages not importable ({e})")
if not BIN or not os.path.exists(BIN):
    print(f"FAIL: hsloth binary not found ($HSLOTH_BIN={BIN!r})")
    sys.exit(1)

FAILURES = []


def check(cond, what, detail=""):
    print(("ok   " if cond else "FAIL ") + what + ("" if cond else f"\n     {detail}"))
    if not cond:
        FAILURES.append(what)


def prep(*args, timeout=300):
    t0 = time.time()
    r = subprocess.run([BIN, "prep", *args], capture_output=True, text=True, timeout=timeout)
    return r, time.time() - t0


def read_shards(out):
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    samples = []
    for entry in manifest["shards"]:
        with h5py.File(os.path.join(out, entry["file"]), "r") as f:
            ids, mask, offs = f["input_ids"][:], f["loss_mask"][:], f["offsets"][:]
            for i in range(len(offs) - 1):
                samples.append((ids[offs[i]:offs[i + 1]].tolist(), mask[offs[i]:offs[i + 1]].tolist()))
    return manifest, samples


def hf_messages(record):
    """LLaMA-Factory sharegpt + tools -> transformers messages and tools (independent of the C++ mapping)."""
    role = {"human": "user", "gpt": "assistant", "system": "system", "observation": "tool"}
    msgs = []
    for m in record["conversations"]:
        if m["from"] == "function_call":
            calls = json.loads(m["value"])
            calls = calls if isinstance(calls, list) else [calls]
            msgs.append({"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls]})
        else:
            msgs.append({"role": role[m["from"]], "content": m["value"]})
    tools = json.loads(record["tools"]) if record.get("tools") else []
    tools = [t if t.get("type") == "function" and "function" in t else {"type": "function", "function": t}
             for t in tools]
    return msgs, tools or None


def main():
    tmp = tempfile.mkdtemp(prefix="hs-prep-inputs-")
    qwen = os.path.join(DATA, "tokenizers", "qwen2.5")
    llama2 = os.path.join(DATA, "tokenizers", "llama2")
    tok = AutoTokenizer.from_pretrained(qwen)
    glaive = os.path.join(FIXTURES, "glaive_toolcall.json")
    records = json.load(open(glaive, encoding="utf-8"))
    llama31 = open(os.path.join(DATA, "chat_templates", "meta-llama-Llama-3.1-8B-Instruct.jinja")).read()

    # Tool data, byte for byte (as token ids) against transformers.
    for family, extra, template in (("qwen2.5", [], None), ("llama3", ["--template", "llama3", "--allow-split-markers"],
                                                            llama31)):
        out = os.path.join(tmp, f"glaive-{family}")
        r, _ = prep("--input", glaive, "--tokenizer", qwen, "--out", out, *extra)
        check(r.returncode == 0, f"glaive_toolcall + {family}: prep exits 0", r.stderr[-2000:])
        if r.returncode != 0:
            continue
        manifest, samples = read_shards(out)
        check(manifest["template"] == family, f"glaive_toolcall + {family}: template {manifest['template']}")
        want = []
        for rec in records:
            msgs, tools = hf_messages(rec)
            kw = {"chat_template": template, "bos_token": ""} if template else {}
            text = tok.apply_chat_template(msgs, tools=tools, tokenize=False, **kw)
            want.append(tok(text, add_special_tokens=False)["input_ids"])
        got = sorted(ids for ids, _ in samples)
        check(got == sorted(want), f"glaive_toolcall + {family}: {len(got)} samples' ids equal transformers'",
              f"ours {[len(x) for x in got]} vs HF {sorted(len(x) for x in want)}")
        trained = "".join(tok.decode([t for t, m in zip(ids, mask) if m]) for ids, mask in samples)
        call = '"name": "get_current_weather"'
        check(call in trained and "k7#Qp2!vZx9L" in trained, f"glaive_toolcall + {family}: tool calls are trained")
        check("condition" not in trained and "temperature" not in trained,
              f"glaive_toolcall + {family}: tool results are not trained", trained)

    # Markers the tokenizer splits stop prep; the flag lets it through.
    conv = os.path.join(tmp, "conv.jsonl")
    with open(conv, "w") as f:
        f.write(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}) + "\n")
    for tokdir, template, marker in ((qwen, "llama3", "<|start_header_id|>"), (llama2, "chatml", "<|im_start|>")):
        r, _ = prep("--input", conv, "--tokenizer", tokdir, "--out", os.path.join(tmp, f"m-{template}"),
                    "--template", template)
        msg = r.stderr + r.stdout
        check(r.returncode == 1 and f"chat template '{template}' marks turns with {marker}" in msg
              and os.path.basename(tokdir) in msg and "--template auto" in msg,
              f"{os.path.basename(tokdir)} + --template {template}: stops naming {marker}", msg[-1500:])
        r, _ = prep("--input", conv, "--tokenizer", tokdir, "--out", os.path.join(tmp, f"m2-{template}"),
                    "--template", template, "--allow-split-markers")
        check(r.returncode == 0, f"{os.path.basename(tokdir)} + --template {template} --allow-split-markers: exit 0",
              r.stderr[-1500:])

    # auto on Qwen2.5 is qwen2.5 (Qwen's default system prompt); chatml is plain.
    for template, has_default in (("auto", True), ("chatml", False)):
        out = os.path.join(tmp, f"t-{template}")
        r, _ = prep("--input", conv, "--tokenizer", qwen, "--out", out, "--template", template)
        manifest, samples = read_shards(out)
        text = tok.decode(samples[0][0])
        check(("You are Qwen" in text) == has_default and
              manifest["template"] == ("qwen2.5" if template == "auto" else "chatml"),
              f"--template {template} on Qwen2.5 -> {manifest['template']}, default system {has_default}", text)

    # Refused by name, nothing written.
    for path, words in ((os.path.join(DATA, "datasets", "dpo_en_300.json"), "DPO / preference data is not supported yet"),
                        (os.path.join(FIXTURES, "oasst_en_messages.jsonl"), "OpenAssistant (OASST) message trees")):
        out = os.path.join(tmp, "refused")
        r, _ = prep("--input", path, "--tokenizer", qwen, "--out", out)
        msg = r.stderr + r.stdout
        check(r.returncode == 1 and words in msg and os.path.basename(path) in msg
              and not os.path.exists(os.path.join(out, "manifest.json")),
              f"{os.path.basename(path)}: refused by name", msg[-1500:])

    # A pretty-printed single object is one record.
    out = os.path.join(tmp, "axolotl")
    r, _ = prep("--input", os.path.join(FIXTURES, "axolotl_conversation.json"), "--tokenizer", qwen, "--out", out)
    ok = r.returncode == 0 and json.load(open(os.path.join(out, "manifest.json")))["prep"]["written"] == 1
    check(ok, "axolotl conversation.json: one record written", (r.stderr + r.stdout)[-1500:])

    # Blank lines: linear (the probe: 20 MiB took 45 s).
    blank = os.path.join(tmp, "blank.jsonl")
    with open(blank, "w") as f:
        f.write("\n" * (20 << 20))
    r, secs = prep("--input", blank, "--tokenizer", qwen, "--out", os.path.join(tmp, "blank"), timeout=120)
    check(secs < 10 and "Traceback" not in r.stderr and "internal error" not in r.stderr,
          f"20 MiB of blank lines: prep ends in {secs:.1f} s (exit {r.returncode})", r.stderr[-800:])

    if FAILURES:
        print(f"\nFAIL: {len(FAILURES)} checks failed")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
