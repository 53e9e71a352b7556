"""`hsloth merge`, `hsloth eval` and `hsloth generate` against transformers + PEFT (CPU, fp32).

Small random models written by transformers (hf_models) get real tokenizers from the shared test data
(TinyLlama's SentencePiece-style BPE; Qwen3's byte-level BPE), and a PEFT adapter with random A and B:
  * merge: the merged folder (sharded, with index) loads in transformers and gives the PEFT-adapted
    logits (<= 1e-5); tokenizer/generation files are copied; --dtype bfloat16 writes bf16 weights and
    config; a non-empty output folder and an adapter of another model are refused;
  * eval: on shards made by `hsloth prep` (response-only loss mask), the loss equals transformers + PEFT's
    token-mean cross-entropy over the same samples and masks read from the shards with h5py (<= 1e-5),
    for base + adapter and for the merged folder, and under `mpirun -np 2`;
  * generate --greedy: the same tokens as transformers' greedy generate on the merged model (plain prompt
    and --chat with the tokenizer's chat template), the same with --adapter on the base model, stops at
    an EOS id from generation_config.json like transformers does, and the streamed text equals
    tokenizer.decode(..., skip_special_tokens=True).
Exit 77 (skipped) when the oracle packages, the shared data or the hsloth binary are missing.
"""

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import h5py
    import torch
    import transformers  # noqa: F401
    from peft import LoraConfig, get_peft_model
    from safetensors import safe_open
    from tokenizers import Tokenizer
except ImportError as e:
    print(f"skipping: {e}")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_models  # noqa: E402

HSLOTH = os.environ.get("HSLOTH_BIN", "")
DATA = os.environ.get("HSLOTH_TESTDATA", "")
TOL = 1e-5
failures = []


def expect(what, cond, detail=""):
    print(f"  {'ok ' if cond else 'FAIL'} {what} {detail}")
    if not cond:
        failures.append(f"{what} {detail}")


def rel(a, b):
    a = a.double() if torch.is_tensor(a) else torch.tensor(a, dtype=torch.float64)
    b = b.double() if torch.is_tensor(b) else torch.tensor(b, dtype=torch.float64)
    return ((a - b).norm() / b.norm()).item()


def check(what, ours, ref, tol=TOL):
    e = rel(ours, ref)
    expect(what, e <= tol, f"rel err {e:.2e}")


def hsloth(*args, ok=True, env=None, prefix=()):
    r = subprocess.run([*prefix, HSLOTH, *map(str, args)], capture_output=True, text=True, env=env)
    if ok and r.returncode != 0:
        raise RuntimeError(f"hsloth {args[0]} failed ({r.returncode}):\n{r.stderr}")
    return r


def make_model(arch, tok_name, out, vocab_size):
    hf_models.make(arch, out, seed=5, vocab_size=vocab_size)
    src = os.path.join(DATA, "tokenizers", tok_name)
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if os.path.exists(os.path.join(src, f)):
            shutil.copy(os.path.join(src, f), out)
    return out


def make_adapter(model_dir, out, targets):
    pm = get_peft_model(hf_models.load(model_dir),
                        LoraConfig(r=8, lora_alpha=16, target_modules=targets, lora_dropout=0.0, task_type="CAUSAL_LM"))
    g = torch.Generator().manual_seed(21)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    pm.save_pretrained(out)
    return pm.eval()


def read_shards(folder, limit):
    """(input_ids, loss_mask) of the samples `eval --max-samples limit` evaluates, from the shards' global order
    as written by hsloth prep."""
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    out = []
    for s in manifest["shards"]:
        with h5py.File(os.path.join(folder, s["file"]), "r") as f:
            ids, mask, off = f["input_ids"][:], f["loss_mask"][:], f["offsets"][:]
        for i in range(len(off) - 1):
            out.append((torch.tensor(ids[off[i]:off[i + 1]], dtype=torch.long),
                        torch.tensor(mask[off[i]:off[i + 1]], dtype=torch.long)))
    # `eval --max-samples N` takes N samples spread over the length-sorted order: floor(i * total / N), i < N.
    return out if limit >= len(out) else [out[(i * len(out)) // limit] for i in range(limit)]


def hf_eval_loss(model, samples):
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, mask in samples:
            labels = ids.masked_fill(mask == 0, -100).unsqueeze(0)
            logits = model(ids.unsqueeze(0)).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100, reduction="sum")
            total += loss.item()
            count += int((labels[0, 1:] != -100).sum())
    return total / count, count


def test_merge(tmp, base, adir, pm):
    print("[merge]")
    out = os.path.join(tmp, "merged")
    r = hsloth("merge", "--model", base, "--adapter", adir, "--out", out, "--max-shard-size", "1MB")
    files = sorted(os.listdir(out))
    shards = [f for f in files if f.startswith("model-") and f.endswith(".safetensors")]
    expect("sharded output with index", len(shards) >= 2 and "model.safetensors.index.json" in files, f"{len(shards)} shards")
    expect("tokenizer and generation files copied",
           all(f in files for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "config.json")))
    merged = hf_models.load(out)
    ids = torch.randint(0, merged.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        check("merged folder (transformers) == PEFT-adapted logits", merged(ids).logits, pm(ids).logits)
    same = all(open(os.path.join(out, f), "rb").read() == open(os.path.join(base, f), "rb").read()
               for f in ("tokenizer.json", "tokenizer_config.json"))
    expect("tokenizer files copied byte for byte", same)

    out16 = os.path.join(tmp, "merged_bf16")
    hsloth("merge", "--model", base, "--adapter", adir, "--out", out16, "--dtype", "bfloat16")
    cfg = json.load(open(os.path.join(out16, "config.json")))
    with safe_open(os.path.join(out16, "model.safetensors"), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    expect("--dtype bfloat16: weights and config", dtypes == {"BF16"} and cfg.get("dtype", cfg.get("torch_dtype")) == "bfloat16",
           f"{dtypes} {cfg.get('dtype')}")
    m16 = hf_models.load(out16, dtype=torch.float32)
    with torch.no_grad():
        check("bf16 merged logits close to the adapted model", m16(ids).logits, pm(ids).logits, tol=2e-2)

    r = hsloth("merge", "--model", base, "--adapter", adir, "--out", out, ok=False)
    expect("non-empty output folder refused", r.returncode != 0 and "not empty" in r.stderr, r.stderr.strip()[-120:])
    return out


def test_eval(tmp, base, adir, merged, pm):
    print("[eval]")
    shards = os.path.join(tmp, "shards")
    hsloth("prep", "--input", os.path.join(DATA, "datasets", "alpaca_tiny.json"), "--tokenizer", base, "--out", shards,
           "--loss", "response", "--shard-tokens", "4000")
    n = 40
    samples = read_shards(shards, n)
    ref_loss, ref_count = hf_eval_loss(pm, samples)
    r = hsloth("eval", "--model", base, "--adapter", adir, "--data", shards, "--json", "--max-samples", n,
               "--tokens-per-batch", 1500)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    expect("eval json keys", set(res) == {"loss", "ppl", "tokens", "samples"}, str(sorted(res)))
    check("eval loss (base + adapter) == transformers + PEFT", res["loss"], ref_loss)
    expect("eval token and sample counts", res["tokens"] == ref_count and res["samples"] == n,
           f"{res['tokens']} vs {ref_count}, {res['samples']} vs {n}")
    check("perplexity == exp(loss)", res["ppl"], math.exp(ref_loss))
    r = hsloth("eval", "--model", merged, "--data", shards, "--json", "--max-samples", n)
    check("eval loss (merged folder) == transformers + PEFT", json.loads(r.stdout)["loss"], ref_loss)
    # padded rows, and a budget below every sample's length (each then gets a pass of its own)
    r = hsloth("eval", "--model", merged, "--data", shards, "--json", "--max-samples", n, "--packing", "padded",
               "--tokens-per-batch", 16)
    check("eval loss, padded, budget below every sample == transformers + PEFT", json.loads(r.stdout)["loss"],
          ref_loss)
    mpi = shutil.which("mpiexec")
    if mpi:
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                   OMPI_MCA_rmaps_base_oversubscribe="1")
        r = hsloth("eval", "--model", merged, "--data", shards, "--json", "--max-samples", n, env=env,
                   prefix=(mpi, "-n", "2", "--oversubscribe"))
        lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
        expect("mpirun -np 2 prints one result", len(lines) == 1, str(len(lines)))
        if lines:
            check("eval loss under mpirun -np 2", json.loads(lines[0])["loss"], ref_loss)
    else:
        print("  (mpiexec not found: the 2-rank eval is not checked)")


def generate_tokens(model_dir, prompt_ids, n):
    m = hf_models.load(model_dir)
    with torch.no_grad():
        out = m.generate(torch.tensor([prompt_ids]), max_new_tokens=n, do_sample=False)
    return out[0, len(prompt_ids):].tolist()


def test_generate(tmp, base, adir, merged, label):
    print(f"[generate: {label}]")
    tok = transformers.AutoTokenizer.from_pretrained(merged)
    prompt = "Write a haiku about the sea. 海"
    n = 24
    ids = Tokenizer.from_file(os.path.join(merged, "tokenizer.json")).encode(prompt, add_special_tokens=True).ids
    ref = generate_tokens(merged, ids, n)
    r = hsloth("generate", "--model", merged, "--prompt", prompt, "--greedy", "--max-new", n, "--ids")
    ours = [int(x) for x in r.stdout.split()]
    expect("greedy tokens == transformers generate", ours == ref, f"\n    ours {ours}\n    hf   {ref}")
    r = hsloth("generate", "--model", base, "--adapter", adir, "--prompt", prompt, "--greedy", "--max-new", n, "--ids")
    expect("with --adapter on the base model: same tokens", [int(x) for x in r.stdout.split()] == ref)
    r = hsloth("generate", "--model", merged, "--prompt", prompt, "--greedy", "--max-new", n)
    expect("streamed text == tokenizer.decode(skip_special_tokens=True)",
           r.stdout[:-1] == tok.decode(ref, skip_special_tokens=True),
           f"\n    ours {r.stdout[:-1]!r}\n    hf   {tok.decode(ref, skip_special_tokens=True)!r}")
    # --chat: the tokenizer's chat template with a generation prompt, rendered by transformers and encoded
    # by HF tokenizers without special tokens (the project's tokenizer oracle; transformers 5's Llama
    # tokenizer class re-tokenizes differently after special tokens, so its tokenize=True is not used).
    chat_text = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                        tokenize=False)
    chat_ids = Tokenizer.from_file(os.path.join(merged, "tokenizer.json")).encode(chat_text, add_special_tokens=False).ids
    ref_chat = generate_tokens(merged, list(chat_ids), n)
    r = hsloth("generate", "--model", merged, "--prompt", prompt, "--chat", "--greedy", "--max-new", n, "--ids")
    expect("--chat greedy tokens == transformers (apply_chat_template + generate)",
           [int(x) for x in r.stdout.split()] == ref_chat)
    # EOS: make a greedy token that first appears at position k >= 3 an EOS id in generation_config.json;
    # both must stop right after it (k + 1 tokens).
    k = next((i for i in range(3, len(ref)) if ref[i] not in ref[:i]), 0)
    eos_dir = os.path.join(tmp, f"eos_{label}")
    shutil.copytree(merged, eos_dir)
    gc_path = os.path.join(eos_dir, "generation_config.json")
    gc = json.load(open(gc_path))
    gc["eos_token_id"] = [ref[k]]
    json.dump(gc, open(gc_path, "w"))
    ref_eos = generate_tokens(eos_dir, ids, n)
    r = hsloth("generate", "--model", eos_dir, "--prompt", prompt, "--greedy", "--max-new", n, "--ids")
    ours = [int(x) for x in r.stdout.split()]
    expect("stops at EOS like transformers", ours == ref_eos and len(ours) == k + 1 and "stop: eos" in r.stderr,
           f"ours {ours} hf {ref_eos}")


def main():
    if not HSLOTH or not os.path.exists(HSLOTH):
        print("skipping: $HSLOTH_BIN not set or missing")
        return 77
    if not DATA or not os.path.isdir(os.path.join(DATA, "tokenizers")):
        print("skipping: shared test data not found ($HSLOTH_TESTDATA)")
        return 77
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="hs-model-cli-") as tmp:
        # TinyLlama tokenizer (SentencePiece-style BPE, 32000 tokens) on a TinyLlama-like GQA model.
        base = make_model("tinyllama", "tinyllama", os.path.join(tmp, "tl"), 32000)
        adir = os.path.join(tmp, "tl_adapter")
        pm = make_adapter(base, adir, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        merged = test_merge(tmp, base, adir, pm)
        test_eval(tmp, base, adir, merged, pm)
        test_generate(tmp, base, adir, merged, "tinyllama")
        # Qwen3 tokenizer (byte-level BPE) on a Qwen3-like model with tied embeddings.
        qbase = make_model("qwen3", "qwen3", os.path.join(tmp, "q3"), 151936)
        qadir = os.path.join(tmp, "q3_adapter")
        make_adapter(qbase, qadir, ["q_proj", "v_proj"])
        qmerged = os.path.join(tmp, "q3_merged")
        hsloth("merge", "--model", qbase, "--adapter", qadir, "--out", qmerged)
        test_generate(tmp, qbase, qadir, qmerged, "qwen3")
        print("[errors]")
        r = hsloth("merge", "--model", base, "--adapter", qadir, "--out", os.path.join(tmp, "bad"), ok=False)
        expect("adapter of another model refused, tensor named",
               r.returncode != 0 and "lora_B.weight' has shape" in r.stderr,
               r.stderr.strip()[-160:])
    if failures:
        print(f"{len(failures)} failure(s):")
        for f in failures:
            print("  " + f)
        return 1
    print("all merge/eval/generate checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
