#!/usr/bin/env python3
"""Ranks agree or stop, and multi-rank runs stop safely (issue #10), on CPU over MPI.

1. Two ranks started with different settings (mpirun's MPMD form `-n 1 hsloth train ... : -n 1 hsloth train
   ... --lora.r 8`) end non-zero within seconds with one error naming the key and both values: lora.r,
   train.max_steps, lora.targets, and a model folder whose config.json has another num_hidden_layers (the
   weights differ too). Before, these corrupted the heap (free(): invalid size) or hung.
2. No false alarm: ranks that see the same model at different paths (a node-local copy) train normally.
3. Ctrl-C under mpirun (SIGINT to mpirun, which forwards it to the ranks): the job checkpoints and ends
   non-zero with a complete checkpoint on disk.
4. A data error on rank 1 after step 1 (in a step, or in the periodic eval) saves the last completed step;
   rank 0 reports rank 1's error.

usage: rank_agree.py MPIEXEC        (exit 77 = skipped: oracle packages missing)
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("HSLOTH_SOURCE", os.path.dirname(os.path.dirname(HERE)))
BIN = os.environ.get("HSLOTH_BIN", "")
MPIEXEC = sys.argv[1] if len(sys.argv) > 1 else "mpiexec"
sys.path.insert(0, os.path.join(SRC, "tests", "parity"))
import script_env  # noqa: E402
failures = []
BOUND = 20  # seconds for a mismatch to end the job (start-up included; ~2 s unloaded)


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def args(d, run, **over):
    keys = {"model.path": f"{d}/model", "data.train": f"{d}/shards/train", "run.dir": f"{d}/{run}", "lora.r": 4,
            "lora.alpha": 8, "train.lr": 5e-3, "train.warmup_steps": 2, "train.max_steps": 10,
            "train.tokens_per_batch": 400, "train.seed": 3, "log.every": 1}
    keys.update(over)
    out = [BIN, "train"]
    for k, v in keys.items():
        out += [f"--{k}", str(v)]
    return out


def mpmd(a, b):
    return [MPIEXEC, "-n", "1", *a, ":", "-n", "1", *b]


def run(cmd, timeout=120, env=None):
    e = dict(os.environ)
    e.pop("HSLOTH_FAIL_AT", None)
    e.update(env or {})
    t0 = time.time()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e)
        return r.returncode, r.stdout + r.stderr, time.time() - t0
    except subprocess.TimeoutExpired as x:
        out = (x.stdout or b"").decode(errors="replace") + (x.stderr or b"").decode(errors="replace")
        return None, out, time.time() - t0


def error_lines(log):
    return [x for x in log.splitlines() if "error" in x and "hsloth train" in x]


def main():
    code = script_env.missing(BIN)
    if code is not None:
        return code
    import hf_models

    d = tempfile.mkdtemp(prefix="hs-rank-agree-")
    try:
        hf_models.make_with_demo_data(d, {"model": {}, "model3": {"num_hidden_layers": 3}})
        shutil.copytree(f"{d}/model", f"{d}/model_copy")
        rc, log, _ = run([BIN, "prep", "--input", f"{d}/demo/train.jsonl", "--tokenizer", f"{d}/model", "--out",
                          f"{d}/shards/train", "--loss", "response", "--template", "chatml"])
        if rc != 0:
            print(log)
            return 1

        # 1. mismatches end the job within seconds, naming the key and both values
        cases = [
            ("lora.r", {"lora.r": 8}, ["ranks disagree", "lora.r: rank 0 has 4 (command line), rank 1 has 8"]),
            ("train.max_steps", {"train.max_steps": 12},
             ["ranks disagree", "train.max_steps: rank 0 has 10 (command line), rank 1 has 12"]),
            ("lora.targets", {"lora.targets": "q_proj v_proj"}, ["ranks disagree", "lora.targets: rank 0 has"]),
            ("model folder", {"model.path": f"{d}/model3"},
             ["ranks disagree", f"config.json num_hidden_layers: rank 0 has 2 (in {d}/model/config.json), rank 1 "
                                f"has 3 (in {d}/model3/config.json)"]),
        ]
        for name, over, wants in cases:
            rc, log, secs = run(mpmd(args(d, f"mm-{name}"), args(d, f"mm-{name}", **over)))
            errs = error_lines(log)
            ok = rc not in (0, None) and secs < BOUND and all(w in log for w in wants)
            check(ok, f"mismatched {name}: exit {rc} in {secs:.1f}s (bound {BOUND}s), "
                      f"{(errs[0] if errs else log.strip()[-300:])[:200]}")
            check("free(): invalid" not in log and "internal error" not in log and len(errs) == 1,
                  f"mismatched {name}: one error line, from rank 0 ({len(errs)} error lines)")

        # 2. the same model at another path is not a difference
        rc, log, secs = run(mpmd(args(d, "same", **{"train.max_steps": 3}),
                                 args(d, "same", **{"train.max_steps": 3, "model.path": f"{d}/model_copy"})))
        check(rc == 0 and os.path.isdir(f"{d}/same/final"), f"same model at another path trains (exit {rc})")

        # 3. Ctrl-C under mpirun: mpirun forwards it; the job checkpoints and ends non-zero
        # (Open MPI 4's mpirun sends the ranks SIGCONT, SIGTERM odls_base_sigkill_timeout seconds later, 1 by
        # default, and SIGKILL as long again after that: 3 s gives a loaded test machine time to save)
        env = dict(os.environ, OMPI_MCA_odls_base_sigkill_timeout="3")
        env.pop("HSLOTH_FAIL_AT", None)
        proc = subprocess.Popen([MPIEXEC, "-n", "2", *args(d, "int", **{"train.max_steps": 100000})],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        t0 = time.time()
        while time.time() - t0 < 120 and proc.poll() is None and not (
                os.path.exists(f"{d}/int/metrics.jsonl") and os.path.getsize(f"{d}/int/metrics.jsonl") > 600):
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        ck = sorted(os.listdir(f"{d}/int/checkpoints")) if os.path.isdir(f"{d}/int/checkpoints") else []
        complete = [c for c in ck if os.path.exists(f"{d}/int/checkpoints/{c}/COMPLETE")]
        check(proc.returncode != 0 and len(complete) == 1 and len(ck) == 1 and "finishing step" in out,
              f"mpirun -n 2 + SIGINT to mpirun: exit {proc.returncode}, checkpoints {ck}, "
              + next((x.strip() for x in out.splitlines() if "finishing step" in x), "no notice"))
        rc, log, _ = run([MPIEXEC, "-n", "2", *args(d, "int", **{"train.max_steps": int(complete[0][5:]) + 2 if
                                                                 complete else 2, "train.resume": "auto"})])
        check(rc == 0 and "resumed from" in log, f"the interrupted -n 2 run resumes (exit {rc})")

        # 3b. Ctrl-C at the terminal under launch/train-node.sh: SIGINT to the script's whole process group (as
        # a terminal sends it). The wrapper keeps mpirun out of that group and turns the first Ctrl-C into
        # SIGUSR1: the ranks finish their step and checkpoint, however long that takes (no SIGKILL a second
        # later), and the job exits 75.
        env = dict(os.environ, HSLOTH=BIN, HS_NP="2", HS_MPIRUN_ARGS="--oversubscribe")
        env.pop("HSLOTH_FAIL_AT", None)
        env.pop("OMPI_MCA_odls_base_sigkill_timeout", None)
        proc = subprocess.Popen(["bash", f"{SRC}/launch/train-node.sh", *args(d, "wrap", **{"train.max_steps": 100000})[2:]],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)
        t0 = time.time()
        while time.time() - t0 < 120 and proc.poll() is None and not (
                os.path.exists(f"{d}/wrap/metrics.jsonl") and os.path.getsize(f"{d}/wrap/metrics.jsonl") > 600):
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            ps = subprocess.run(["ps", "-eo", "pid,pgid,sid,stat,etime,args"], capture_output=True, text=True).stdout
            os.killpg(proc.pid, signal.SIGKILL)
            subprocess.run(["pkill", "-9", "-f", f"{d}/wrap"])
            out, _ = proc.communicate(timeout=60)
            out += "\n[timed out 120 s after Ctrl-C; processes then]\n" + "\n".join(
                x for x in ps.splitlines() if "hsloth" in x or "mpirun" in x or "train-node" in x)
        ck = sorted(os.listdir(f"{d}/wrap/checkpoints")) if os.path.isdir(f"{d}/wrap/checkpoints") else []
        complete = [c for c in ck if os.path.exists(f"{d}/wrap/checkpoints/{c}/COMPLETE")]
        check(proc.returncode == 75 and len(complete) == 1 and len(ck) == 1,
              f"train-node.sh -n 2 + Ctrl-C to its process group: exit {proc.returncode} (want 75), checkpoints {ck}"
              + ("" if proc.returncode == 75 else "\n" + out[-1500:]))

        # 4. a data error on rank 1 at step 4: step 3 is saved, rank 0 reports rank 1's error
        rc, log, secs = run([MPIEXEC, "-n", "2", *args(d, "data")], env={"HSLOTH_FAIL_AT": "1:4:data"})
        check(rc not in (0, None) and "injected data error" in log and "on rank 1" in log
              and f"saved step 3 to {d}/data/checkpoints/step-3" in log
              and os.path.exists(f"{d}/data/checkpoints/step-3/COMPLETE"),
              f"-n 2, data error on rank 1 at step 4: exit {rc} in {secs:.1f}s, step 3 saved")
        rc, log, secs = run([MPIEXEC, "-n", "2", *args(d, "evalerr", **{"data.eval_fraction": 0.25, "eval.every": 4})],
                            env={"HSLOTH_FAIL_AT": "1:4:eval"})
        check(rc not in (0, None) and "(in the eval after step 4, on rank 1)" in log
              and os.path.exists(f"{d}/evalerr/checkpoints/step-4/COMPLETE"),
              f"-n 2, unreadable eval sample on rank 1 after step 4: exit {rc} in {secs:.1f}s, step 4 saved")
    finally:
        if not failures:
            shutil.rmtree(d, ignore_errors=True)
        else:
            print(f"work folder kept: {d}")
    print(f"{len(failures)} failure(s)" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
