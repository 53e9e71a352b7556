#!/usr/bin/env python3
"""`hsloth plan` and train's start-up check, end to end on a tiny random tinyllama (the demo's data):

1. `hsloth --help` marks no command as not implemented; `hsloth plan --help` documents --gpu, --world, --json.
2. The plan's counts against independent ones: parameters = the numel of the model's safetensors (read with
   safetensors), trained parameters = the numel of the PEFT adapter a real `hsloth train` writes, steps and tokens
   per step = the steps and tokens that run logs in metrics.jsonl (with grad_accum 2 and an eval hold-out).
3. The text report has its tables and a verdict; --gpu SIZE gives a memory plan without speed; an unknown --gpu
   name is an error listing the known ones; a typo in a key is an error naming it and the closest key.
4. `hsloth train` with HSLOTH_PLAN_GPU_MEM (the GPU's free memory, for tests) below the predicted peak stops
   before loading weights, says so with the override; --train.plan_check off lets the same run through.

usage: plan_cli.py        (HSLOTH_BIN names the binary; exit 77 = skipped: oracle packages missing)
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
sys.path.insert(0, os.path.join(SRC, "tests", "parity"))
import script_env  # noqa: E402

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def hs(*args, env=None):
    e = dict(os.environ)
    e.pop("HSLOTH_PLAN_GPU_MEM", None)
    e.update(env or {})
    return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=300, env=e)


def main():
    code = script_env.missing(BIN, extra=("safetensors",))
    if code is not None:
        return code
    import hf_models
    from safetensors import safe_open

    d = tempfile.mkdtemp(prefix="hs-plan-cli-")
    try:
        hf_models.make_with_demo_data(d, {"model": {}})
        r = hs("prep", "--input", f"{d}/demo/train.jsonl", "--tokenizer", f"{d}/model", "--out", f"{d}/shards",
               "--loss", "response", "--template", "chatml")
        if r.returncode != 0:
            print(r.stdout, r.stderr)
            return 1
        with open(f"{d}/run.ini", "w") as f:
            f.write(f"finetune = lora\n[model]\npath = {d}/model\n[data]\ntrain = {d}/shards\neval_fraction = 0.1\n"
                    f"[run]\ndir = {d}/run\n[lora]\nr = 4\nalpha = 8\ntargets = q_proj v_proj down_proj\n"
                    "[train]\nmax_steps = 3\ntokens_per_batch = 400\ngrad_accum = 2\nwarmup_steps = 1\n[log]\nevery = 1\n")

        # 1. help
        r = hs("--help")
        check(r.returncode == 0 and "[not implemented" not in r.stdout and "\n  plan " in r.stdout,
              "hsloth --help lists plan and marks nothing as not implemented")
        r = hs("plan", "--help")
        check(r.returncode == 0 and all(k in r.stdout for k in ("--gpu", "--world", "--json", "train.plan_check")),
              "hsloth plan --help documents --gpu, --world, --json and train.plan_check")

        # 2. counts against the files and a real run
        r = hs("plan", "--config", f"{d}/run.ini", "--gpu", "h100", "--json")
        check(r.returncode == 0, f"plan --json exits 0 ({r.stderr[-300:]})")
        p = json.loads(r.stdout)
        numel = 0
        with safe_open(f"{d}/model/model.safetensors", "pt") as f:
            for k in f.keys():
                numel += f.get_slice(k).get_shape()[0] * (
                    f.get_slice(k).get_shape()[1] if len(f.get_slice(k).get_shape()) > 1 else 1)
        check(p["params"] == numel, f"plan params {p['params']} = numel of model.safetensors {numel}")
        r = hs("train", "--config", f"{d}/run.ini", env={"HSLOTH_PLAN_GPU_MEM": "64GiB"})
        check(r.returncode == 0 and "plan: predicted peak" in r.stderr,
              f"train runs with the check on and logs the predicted peak (exit {r.returncode}) {r.stderr[-400:]}")
        trained = 0
        with safe_open(f"{d}/run/final/adapter_model.safetensors", "pt") as f:
            for k in f.keys():
                s = f.get_slice(k).get_shape()
                trained += s[0] * s[1]
        check(p["trainable"] == trained, f"plan trainable {p['trainable']} = numel of the trained adapter {trained}")
        ms = [json.loads(x) for x in open(f"{d}/run/metrics.jsonl") if '"loss"' in x]
        check(p["data"]["total_steps"] == len(ms) == 3, f"plan total_steps {p['data']['total_steps']} = steps run {len(ms)}")
        # metrics' epoch = step / steps_per_epoch
        spe = round(ms[0]["step"] / ms[0]["epoch"])
        check(p["data"]["steps_per_epoch"] == spe, f"plan steps_per_epoch {p['data']['steps_per_epoch']} = train's {spe}")
        check(p["speed"] is not None and p["speed"]["tokens_per_s"] > 0 and p["fits"] is True,
              "with --gpu h100: speed and a fits verdict")

        # 3. the text report, memory-only and unknown GPUs, typos
        r = hs("plan", "--config", f"{d}/run.ini", "--gpu", "a100-40gb", "--world", "2")
        out = r.stdout
        check(r.returncode == 0 and all(s in out for s in ("memory, one rank", "PEAK allocated", "NEEDED on the GPU",
                                                              "gradient all-reduce", "tokens/s", "\nfits: needs")),
              "text report: memory table, all-reduce, speed and the verdict")
        r = hs("plan", "--config", f"{d}/run.ini", "--gpu", "24GiB", "--json")
        j = json.loads(r.stdout) if r.returncode == 0 else {}
        check(j.get("speed", 1) is None and j.get("fits") is True and j["gpu"]["memory_only"],
              "--gpu 24GiB: a memory plan (fits) without speed")
        r = hs("plan", "--config", f"{d}/run.ini", "--gpu", "h1000")
        check(r.returncode == 1 and "unknown GPU 'h1000'" in r.stderr and "h100-sxm" in r.stderr and "80GiB" in r.stderr,
              "unknown --gpu: an error naming it and the known GPUs: " + r.stderr.strip()[:160])
        r = hs("plan", "--config", f"{d}/run.ini", "--lora.rr", "8")
        check(r.returncode != 0 and "lora.rr" in r.stderr and "lora.r" in r.stderr.replace("lora.rr", ""),
              "a misspelt key is an error naming it and the closest key: " + r.stderr.strip()[:160])
        with open(f"{d}/typo.ini", "w") as f:
            f.write(open(f"{d}/run.ini").read().replace("grad_accum = 2", "grad_acum = 2"))
        r = hs("plan", "--config", f"{d}/typo.ini")
        check(r.returncode != 0 and "grad_acum" in r.stderr and "typo.ini:" in r.stderr,
              "a misspelt key in the INI names the file:line: " + r.stderr.strip()[:160])
        r = hs("plan", "--config", f"{d}/run.ini", "--json")
        j = json.loads(r.stdout)
        if j["gpu"] is None:
            check(j["fits"] is None and "--gpu" in j.get("gpu_note", ""),
                  "--gpu auto without a GPU: memory plan only, and the note asks for --gpu")

        # 4. train's check: refuse before loading weights, override with train.plan_check off
        shutil.rmtree(f"{d}/run2", ignore_errors=True)
        r = hs("train", "--config", f"{d}/run.ini", "--run.dir", f"{d}/run2", env={"HSLOTH_PLAN_GPU_MEM": "100000"})
        check(r.returncode == 1 and "does not fit" in r.stderr and "--train.plan_check off" in r.stderr
              and "loaded in" not in r.stderr,
              "train refuses a run whose predicted peak exceeds the GPU memory, before loading weights: "
              + next((x for x in r.stderr.splitlines() if "does not fit" in x), r.stderr[-300:])[:200])
        r = hs("train", "--config", f"{d}/run.ini", "--run.dir", f"{d}/run2", "--train.plan_check", "off",
               env={"HSLOTH_PLAN_GPU_MEM": "100000"})
        check(r.returncode == 0 and os.path.exists(f"{d}/run2/final/adapter_model.safetensors"),
              f"--train.plan_check off runs it anyway (exit {r.returncode})")
        r = hs("train", "--config", f"{d}/run.ini", "--run.dir", f"{d}/run3", env={"HSLOTH_PLAN_GPU_MEM": "lots"})
        check(r.returncode == 1 and "HSLOTH_PLAN_GPU_MEM" in r.stderr, "a bad HSLOTH_PLAN_GPU_MEM is an error")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print(f"{len(failures)} failure(s)" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
