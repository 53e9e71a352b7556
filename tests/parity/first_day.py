"""A new user's first day (issue #10): the pieces of the README's first command and the rough edges of
eval / generate / merge / config paths, each against an independent reference.

  * the demo's data/model script runs without numpy (setup.sh installs torch only; torch does not pull
    numpy in), and its model loads in transformers;
  * config paths: relative paths in an INI are relative to the INI's folder (train run from another
    working directory), a missing input path names the INI line; the adapter's base_model_name_or_path is
    absolute and names the model folder;
  * an adapter whose target_modules is an invalid regular expression is a clear error naming the file and
    key, never "internal error";
  * merge takes the same dtype words as train (bf16) and writes bf16 weights (read with safetensors);
  * eval and generate refuse sequences past the model's max_position_embeddings, quickly and saying so;
  * eval --max-samples N takes N samples spread over the lengths (not the N shortest): its loss equals
    transformers' loss over those samples read from the shards with h5py;
  * generate keeps the logits of the last position only: a 6,000-token prompt on a 32,000-token
    vocabulary costs far less than the 768 MB its full logits would (peak RSS measured with wait4).
Exit 77 (skipped) when the oracle packages, the shared data or the hsloth binary are missing.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

try:
    import h5py
    import torch
    import transformers  # noqa: F401
    from safetensors import safe_open
except ImportError as e:
    print(f"skipping: {e}")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_models  # noqa: E402

HSLOTH = os.environ.get("HSLOTH_BIN", "")
DATA = os.environ.get("HSLOTH_TESTDATA", "")
SRC = os.environ.get("HSLOTH_SOURCE",
                     os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
failures = []


def expect(what, cond, detail=""):
    print(f"  {'ok ' if cond else 'FAIL'} {what} {detail}")
    if not cond:
        failures.append(f"{what} {detail}")


def hsloth(*args, ok=True, cwd=None):
    r = subprocess.run([HSLOTH, *map(str, args)], capture_output=True, text=True, cwd=cwd)
    if ok and r.returncode != 0:
        raise RuntimeError(f"hsloth {args[0]} failed ({r.returncode}):\n{r.stderr}")
    return r


def run_measured(args):
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.execv(HSLOTH, [HSLOTH, *map(str, args)])
    _, status, ru = os.wait4(pid, 0)
    return os.waitstatus_to_exitcode(status), ru.ru_maxrss / 1024.0  # ru_maxrss is in KiB on Linux


def make_demo(out):
    # As on a fresh machine: numpy is not importable (sys.modules entry None makes `import numpy` fail).
    code = ("import sys, runpy; sys.modules['numpy'] = None; "
            f"sys.argv = ['make_demo.py', {out!r}, '--train', '200', '--eval', '20', '--model']; "
            f"runpy.run_path({os.path.join(SRC, 'launch', 'demo', 'make_demo.py')!r}, run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    expect("make_demo.py runs without numpy", r.returncode == 0, r.stderr.strip()[-300:])
    return r.returncode == 0


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def main():
    if not HSLOTH or not os.path.exists(HSLOTH) or not DATA:
        print("skipping: HSLOTH_BIN or HSLOTH_TESTDATA not set")
        return 77
    with tempfile.TemporaryDirectory() as d:
        demo = os.path.join(d, "demo")
        if not make_demo(demo):
            return 1
        model = os.path.join(demo, "model")
        m = hf_models.load(model)  # transformers reads the folder the numpy-free script wrote
        expect("demo model loads in transformers", m.config.num_hidden_layers == 2)

        # ---- config paths: an INI in its own folder, train started from another working directory.
        hsloth("prep", "--input", os.path.join(demo, "train.jsonl"), "--tokenizer", model, "--out",
               os.path.join(demo, "shards"), "--template", "chatml", "--loss", "response")
        cfgdir = os.path.join(d, "configs")
        os.makedirs(cfgdir)
        ini = os.path.join(cfgdir, "run.ini")
        with open(ini, "w") as f:
            f.write("finetune = lora\n[model]\npath = ../demo/model\n[data]\ntrain = ../demo/shards\n"
                    "[run]\ndir = ../runs/r\n[train]\nmax_steps = 2\ntokens_per_batch = 512\n"
                    "[eval]\nevery = 0\n")
        elsewhere = os.path.join(d, "elsewhere")
        os.makedirs(elsewhere)
        r = hsloth("train", "--config", ini, ok=False, cwd=elsewhere)
        expect("train with INI-relative paths from another folder", r.returncode == 0, r.stderr.strip()[-400:])
        adapter = os.path.join(d, "runs", "r", "final")
        expect("run folder is relative to the INI", os.path.exists(os.path.join(adapter, "adapter_config.json")))
        if os.path.exists(os.path.join(adapter, "adapter_config.json")):
            base = json.load(open(os.path.join(adapter, "adapter_config.json")))["base_model_name_or_path"]
            expect("adapter base_model_name_or_path is absolute and is the model folder",
                   os.path.isabs(base) and os.path.samefile(base, model), base)
        with open(ini, "a") as f:
            f.write("[lora]\nr = 8\n")
        with open(ini) as f:
            lines = f.read().split("\n")
        bad = os.path.join(cfgdir, "bad.ini")
        with open(bad, "w") as f:
            f.write("\n".join(l.replace("../demo/shards", "demo/shards") for l in lines))
        r = hsloth("train", "--config", bad, ok=False, cwd=d)
        expect("missing data path names the INI line", r.returncode == 1 and f"{bad}:5" in r.stderr
               and "data.train" in r.stderr and os.path.join(cfgdir, "demo", "shards") in r.stderr,
               r.stderr.strip())

        # ---- an adapter with an invalid target_modules regex
        if os.path.exists(os.path.join(adapter, "adapter_config.json")):
            broken = os.path.join(d, "broken_adapter")
            shutil.copytree(adapter, broken)
            p = os.path.join(broken, "adapter_config.json")
            j = json.load(open(p))
            j["target_modules"] = "["
            json.dump(j, open(p, "w"))
            r = hsloth("generate", "--model", model, "--adapter", broken, "--prompt", "hi", "--max-new", "2",
                       ok=False)
            expect("invalid target_modules regex is a clear error", r.returncode == 1 and
                   "target_modules" in r.stderr and "adapter_config.json" in r.stderr and
                   "regular expression" in r.stderr and "internal error" not in r.stderr, r.stderr.strip())

            # ---- merge --dtype bf16 (train's word) writes bf16 weights
            merged = os.path.join(d, "merged")
            r = hsloth("merge", "--model", model, "--adapter", adapter, "--out", merged, "--dtype", "bf16", ok=False)
            expect("merge --dtype bf16 accepted", r.returncode == 0, r.stderr.strip()[-300:])
            if r.returncode == 0:
                files = [f for f in os.listdir(merged) if f.endswith(".safetensors")]
                with safe_open(os.path.join(merged, files[0]), "pt") as f:
                    dts = {f.get_tensor(k).dtype for k in f.keys()}
                expect("merged weights are bf16", dts == {torch.bfloat16}, str(dts))

        # ---- past max_position_embeddings (the demo model's is 512)
        long_text = " ".join(["the cat says meow"] * 400)
        write_jsonl(os.path.join(d, "long.jsonl"), [{"text": long_text}, {"text": "the cat says meow"}])
        hsloth("prep", "--input", os.path.join(d, "long.jsonl"), "--tokenizer", model, "--out",
               os.path.join(d, "long_shards"), "--max-len", "0")
        t0 = time.time()
        r = hsloth("eval", "--model", model, "--data", os.path.join(d, "long_shards"), ok=False)
        expect("eval refuses a sample past max_position_embeddings", r.returncode == 1 and
               "max_position_embeddings (512)" in r.stderr and time.time() - t0 < 60, r.stderr.strip())
        r = hsloth("generate", "--model", model, "--prompt", long_text, "--max-new", "4", ok=False)
        expect("generate refuses a prompt past max_position_embeddings", r.returncode == 1 and
               "max_position_embeddings (512)" in r.stderr, r.stderr.strip())
        r = hsloth("generate", "--model", model, "--prompt", "the cat", "--max-new", "600", ok=False)
        expect("generate refuses --max-new past max_position_embeddings", r.returncode == 1 and
               "max_position_embeddings" in r.stderr, r.stderr.strip())

        # ---- eval --max-samples: spread over lengths; loss equals transformers' on those samples
        rows = [{"text": " ".join(["the cat says meow"] * (1 + i % 9)) + f" {i}"} for i in range(40)]
        write_jsonl(os.path.join(d, "var.jsonl"), rows)
        shards = os.path.join(d, "var_shards")
        hsloth("prep", "--input", os.path.join(d, "var.jsonl"), "--tokenizer", model, "--out", shards)
        r = hsloth("eval", "--model", model, "--data", shards, "--max-samples", "5", "--json",
                   "--dtype", "float32")
        got = json.loads(r.stdout)
        samples = []
        for name in sorted(os.listdir(shards)):
            if name.endswith(".h5"):
                with h5py.File(os.path.join(shards, name)) as f:
                    ids, mask, off = f["input_ids"][:], f["loss_mask"][:], f["offsets"][:]
                    samples += [(ids[off[i]:off[i + 1]], mask[off[i]:off[i + 1]]) for i in range(len(off) - 1)]
        lens = [len(s[0]) for s in samples]
        expect("shards are length-sorted (the premise)", lens == sorted(lens))
        chosen = [samples[(i * len(samples)) // 5] for i in range(5)]
        expect("the chosen samples span the lengths", len(chosen[-1][0]) > len(chosen[0][0]) and
               len(chosen[-1][0]) >= lens[len(lens) * 4 // 5])
        tot, cnt = 0.0, 0
        with torch.no_grad():
            for ids, mask in chosen:
                x = torch.tensor(ids, dtype=torch.long)[None]
                logits = m(x).logits[0, :-1].double()
                tgt = x[0, 1:]
                sel = torch.tensor(mask[1:], dtype=torch.bool)
                tot += torch.nn.functional.cross_entropy(logits[sel], tgt[sel], reduction="sum").item()
                cnt += int(sel.sum())
        ref = tot / cnt
        expect("eval --max-samples 5: samples", got["samples"] == 5, str(got))
        expect("eval --max-samples 5 loss == transformers on the spread samples",
               abs(got["loss"] - ref) <= 1e-5 * abs(ref), f"{got['loss']:.8f} vs {ref:.8f}")

        # ---- generate: last-position logits only (6,000-token prompt, 32,000-token vocabulary)
        big = os.path.join(d, "big")
        hf_models.make("tinyllama", big, seed=3, vocab_size=32000, max_position_embeddings=8192)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(DATA, "tokenizers", "tinyllama", f), big)
        small_rc, small_mb = run_measured(["generate", "--model", big, "--prompt", "hello world",
                                           "--max-new", "2", "--greedy"])
        long_prompt = " ".join(["hello world"] * 3000)
        big_rc, big_mb = run_measured(["generate", "--model", big, "--prompt", long_prompt, "--max-new", "2",
                                       "--greedy"])
        full_logits_mb = 6000 * 32000 * 4 / 2**20
        expect("generate runs (short and 6k-token prompts)", small_rc == 0 and big_rc == 0, f"{small_rc} {big_rc}")
        expect("generate's memory does not hold every prompt position's logits",
               big_mb - small_mb < 0.4 * full_logits_mb,
               f"peak RSS {small_mb:.0f} MB -> {big_mb:.0f} MB (full logits would be {full_logits_mb:.0f} MB)")

    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
