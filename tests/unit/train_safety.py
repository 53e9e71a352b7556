#!/usr/bin/env python3
"""Training run safety in one process (issue #10): nothing a user does or meets mid-run loses the run.

1. Ctrl-C: the first SIGINT finishes the step, checkpoints, exits 75 and says so; resuming from that
   checkpoint ends with the adapter of the uninterrupted run (bit-identical). A second SIGINT aborts at once.
2. An error after step 1 that leaves the state consistent saves the last completed step and says where: an
   unreadable sample (HSLOTH_FAIL_AT=0:5:data: saved step 4; resuming ends bit-identical to the uninterrupted
   run), one in the periodic eval (0:4:eval: saved step 4), a NaN loss (HSLOTH_FAIL_AT=0:4:nan: saved step 3)
   and a real divergence (train.lr 10).
3. Nothing overwritten: resume = auto with every checkpoint damaged is an error naming them, final/ untouched;
   resume = auto in a new run.dir starts fresh. A full disk (RLIMIT_FSIZE) while writing a checkpoint is one
   error naming the path, with no .tmp-step-N left behind.
4. Rough edges: metrics.jsonl has every step once after a resume; train.warmup_steps > train.max_steps is an
   error with the fix; samples longer than the model's max_position_embeddings are refused at start-up with
   the --max-len hint.

usage: train_safety.py        (HSLOTH_BIN names the binary; exit 77 = skipped: oracle packages missing)
"""
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("HSLOTH_SOURCE", os.path.dirname(os.path.dirname(HERE)))
BIN = os.environ.get("HSLOTH_BIN", "")
sys.path.insert(0, os.path.join(SRC, "tests", "parity"))
import script_env  # noqa: E402
failures = []
STEPS = 12


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def train_args(d, run, **over):
    keys = {"model.path": f"{d}/model", "data.train": f"{d}/shards/train", "run.dir": f"{d}/{run}", "lora.r": 4,
            "lora.alpha": 8, "train.lr": 5e-3, "train.schedule": "linear", "train.warmup_steps": 2,
            "train.max_steps": STEPS, "train.tokens_per_batch": 400, "train.seed": 3, "log.every": 1}
    keys.update(over)
    out = [BIN, "train"]
    for k, v in keys.items():
        out += [f"--{k}", str(v)]
    return out


def train(d, run, env=None, preexec=None, **over):
    e = dict(os.environ)
    e.pop("HSLOTH_FAIL_AT", None)
    e.update(env or {})
    return subprocess.run(train_args(d, run, **over), capture_output=True, text=True, timeout=300, env=e,
                          preexec_fn=preexec)


def steps_logged(d, run):
    path = f"{d}/{run}/metrics.jsonl"
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(x)["step"] for x in f if x.strip() and "loss" in json.loads(x)]


def wait_for_step(d, run, proc, step, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout and proc.poll() is None:
        if any(s >= step for s in steps_logged(d, run)):
            return True
        time.sleep(0.005)
    return False


def checkpoints(d, run):
    p = f"{d}/{run}/checkpoints"
    return sorted(os.listdir(p)) if os.path.isdir(p) else []


def complete(d, run, step):
    return os.path.exists(f"{d}/{run}/checkpoints/step-{step}/COMPLETE")


def adapter(d, run):
    with open(f"{d}/{run}/final/adapter_model.safetensors", "rb") as f:
        return f.read()


def last_line(r):
    lines = [x for x in r.stderr.strip().splitlines() if "error" in x or "hsloth train" in x]
    return (lines[-1] if lines else r.stderr.strip()[-200:])[:220]


def main():
    code = script_env.missing(BIN)
    if code is not None:
        return code
    import hf_models

    d = tempfile.mkdtemp(prefix="hs-train-safety-")
    try:
        hf_models.make_with_demo_data(d, {"model": {}, "model_short": {"max_position_embeddings": 32}})
        r = subprocess.run([BIN, "prep", "--input", f"{d}/demo/train.jsonl", "--tokenizer", f"{d}/model", "--out",
                            f"{d}/shards/train", "--loss", "response", "--template", "chatml"], capture_output=True,
                           text=True)
        if r.returncode != 0:
            print(r.stdout, r.stderr)
            return 1

        # The uninterrupted run every resumed run must reproduce bit for bit.
        r = train(d, "ref")
        if r.returncode != 0:
            print(r.stderr[-3000:])
            check(False, f"reference run exits 0 (got {r.returncode})")
            return 1
        ref = adapter(d, "ref")

        # 1. Ctrl-C: first SIGINT checkpoints and exits 75; resuming reproduces the uninterrupted run.
        proc = subprocess.Popen(train_args(d, "int", **{"train.max_steps": STEPS}), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        reached = wait_for_step(d, "int", proc, 3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        ck = checkpoints(d, "int")
        check(reached and proc.returncode == 75, f"first SIGINT: exit code {proc.returncode} (75 expected)")
        check("interrupted: finishing step" in err and "press Ctrl-C again to abort without saving" in err,
              "first SIGINT says it finishes the step and saves: "
              + next((x for x in err.splitlines() if "interrupted" in x), "(no message)"))
        check(len(ck) == 1 and complete(d, "int", int(ck[0][5:])) if ck else False, f"first SIGINT saved {ck}")
        r = train(d, "int", **{"train.resume": "auto"})
        check(r.returncode == 0 and adapter(d, "int") == ref,
              f"SIGINT + resume: exit {r.returncode}, final adapter bit-identical to the uninterrupted run")
        check(steps_logged(d, "int") == list(range(1, STEPS + 1)),
              f"metrics.jsonl after SIGINT + resume has each step once: {steps_logged(d, 'int')}")

        # A second SIGINT aborts at once, by SIGINT, without saving.
        # (grad_accum 16: steps long enough that the second signal comes while the first's step still runs;
        # two signals sent back to back would merge into one pending signal)
        proc = subprocess.Popen(train_args(d, "int2", **{"train.max_steps": 100000, "train.grad_accum": 16}),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        reached = wait_for_step(d, "int2", proc, 2)
        t0 = time.time()
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        check(reached and proc.returncode == -signal.SIGINT and time.time() - t0 < 5,
              f"second SIGINT: ended by SIGINT (returncode {proc.returncode}) in {time.time() - t0:.2f}s")
        check("aborting without saving" in err, "second SIGINT says it aborts without saving")

        # 2. errors after step 1 keep the run: an unreadable sample at step 5 saves step 4 ...
        r = train(d, "data", env={"HSLOTH_FAIL_AT": "0:5:data"})
        want = f"saved step 4 to {d}/data/checkpoints/step-4"
        check(r.returncode == 1 and "injected data error" in r.stderr and want in r.stderr
              and "--train.resume auto" in r.stderr, f"data error at step 5: exit {r.returncode}, '{want}'")
        check(complete(d, "data", 4) and not any(c.startswith(".tmp") for c in checkpoints(d, "data")),
              f"data error: step-4 is a complete checkpoint ({checkpoints(d, 'data')})")
        r = train(d, "data", **{"train.resume": "auto"})
        check(r.returncode == 0 and "resumed from" in r.stderr and adapter(d, "data") == ref,
              "data error + resume: final adapter bit-identical to the uninterrupted run")

        # ... as does one in the periodic eval after step 4 (held-out samples of train, eval every 4 steps) ...
        r = train(d, "evalerr", env={"HSLOTH_FAIL_AT": "0:4:eval"},
                  **{"data.eval_fraction": 0.25, "eval.every": 4, "eval.exact_match": "true"})
        check(r.returncode == 1 and "an eval sample cannot be read (in the eval after step 4)" in r.stderr
              and f"saved step 4 to {d}/evalerr/checkpoints/step-4" in r.stderr and complete(d, "evalerr", 4),
              f"unreadable eval sample after step 4: exit {r.returncode}, step 4 saved")

        # ... a NaN loss at step 4 saves step 3 (the update of step 4 is not applied) ...
        r = train(d, "nan", env={"HSLOTH_FAIL_AT": "0:4:nan"})
        check(r.returncode == 1 and "non-finite loss at step 4" in r.stderr
              and f"saved step 3 to {d}/nan/checkpoints/step-3" in r.stderr and complete(d, "nan", 3),
              f"NaN loss at step 4: exit {r.returncode}, step 3 saved: {last_line(r)}")
        r = train(d, "nan", **{"train.resume": "auto"})
        check(r.returncode == 0 and adapter(d, "nan") == ref, "NaN + resume: final adapter bit-identical")

        # ... and so does a real divergence, at whatever step it comes.
        r = train(d, "diverge", **{"train.lr": 10, "train.max_grad_norm": 0, "train.warmup_steps": 0,
                                   "train.max_steps": 40})
        saved = [x for x in r.stderr.splitlines() if "saved step" in x or "nothing to save" in x]
        check(r.returncode == 1 and "non-finite" in r.stderr and saved,
              f"train.lr 10 diverges: exit {r.returncode}, {saved[0].strip() if saved else 'no save reported'}")

        # 3. resume = auto with every checkpoint damaged: an error naming them; final/ is not touched.
        r = train(d, "dmg", **{"ckpt.every": 4, "ckpt.keep": 2})
        if r.returncode != 0 or not os.path.exists(f"{d}/dmg/final/adapter_model.safetensors"):
            check(False, f"the run to damage trains to the end: exit {r.returncode}\n{r.stderr[-2000:]}")
            return 1
        final_before = adapter(d, "dmg")
        mtime = os.path.getmtime(f"{d}/dmg/final/adapter_model.safetensors")
        for c in checkpoints(d, "dmg"):
            with open(f"{d}/dmg/checkpoints/{c}/train_state.safetensors", "r+b") as f:
                f.seek(200)
                f.write(b"\xff\xff\xff\xff")
        r = train(d, "dmg", **{"train.resume": "auto", "ckpt.every": 4, "ckpt.keep": 2})
        check(r.returncode == 1 and "no valid checkpoint" in r.stderr and "step-8" in r.stderr
              and "step-12" in r.stderr and "--train.resume off" in r.stderr,
              f"resume = auto with all checkpoints damaged: exit {r.returncode}, names step-8 and step-12")
        check(adapter(d, "dmg") == final_before and os.path.getmtime(f"{d}/dmg/final/adapter_model.safetensors")
              == mtime, "final/ is not overwritten")
        r = train(d, "fresh", **{"train.resume": "auto", "train.max_steps": 2})
        check(r.returncode == 0 and "starting fresh" in r.stderr, "resume = auto in a new run.dir starts fresh")

        # A full disk while writing a checkpoint: one error with the path, no temp folder left. The file-size
        # limit is set once the run is training (MPI start-up writes bigger files); SIGXFSZ is ignored, so a
        # write past it fails with EFBIG as one on a full disk fails with ENOSPC.
        proc = subprocess.Popen(train_args(d, "full", **{"lora.r": 8, "ckpt.every": 10}), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGXFSZ, signal.SIG_IGN))
        reached = wait_for_step(d, "full", proc, 1)
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (100_000, 100_000))
        _, err = proc.communicate(timeout=120)
        errs = [x for x in err.splitlines() if "error" in x]
        check(reached and proc.returncode == 1 and len(errs) == 1 and "cannot write checkpoint step-10" in err
              and f"{d}/full/checkpoints" in err, f"full disk: exit {proc.returncode}, one error: "
              + (errs[0][:200] if errs else err[-300:]))
        left = os.listdir(f"{d}/full/checkpoints") if os.path.isdir(f"{d}/full/checkpoints") else []
        check(reached and not left, f"full disk: nothing left in checkpoints/ ({left})")

        # 4. metrics.jsonl after a crash past the last checkpoint: each step once.
        r = train(d, "dup", env={"HSLOTH_FAIL_AT": "0:7"}, **{"ckpt.every": 4})
        before = steps_logged(d, "dup")
        r = train(d, "dup", **{"ckpt.every": 4, "train.resume": "auto"})
        after = steps_logged(d, "dup")
        check(before == [1, 2, 3, 4, 5, 6] and after == list(range(1, STEPS + 1)),
              f"metrics.jsonl after crash at step 7 + resume from step 4: steps {after}")

        r = train(d, "warm", **{"train.warmup_steps": 20, "train.max_steps": 10})
        check(r.returncode == 1 and "train.warmup_steps = 20" in r.stderr and "train.max_steps = 10" in r.stderr
              and "--train.warmup_steps to at most 10" in r.stderr, f"warmup > max_steps: {last_line(r)}")

        r = train(d, "pos", **{"model.path": f"{d}/model_short"})
        check(r.returncode == 1 and "max_position_embeddings = 32" in r.stderr and "--max-len 32" in r.stderr
              and not os.path.isdir(f"{d}/pos/checkpoints"), f"samples beyond max_position_embeddings: {last_line(r)}")
    finally:
        if not failures:
            shutil.rmtree(d, ignore_errors=True)
        else:
            print(f"work folder kept: {d}")
    print(f"{len(failures)} failure(s)" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
