#!/usr/bin/env python3
"""Data-parallel scaling of hsloth on one node (issue #15): tokens/s per GPU at -np 1 and -np N with the same
per-GPU batch, for LoRA and QLoRA on the Llama-3.1-8B shape, full fine-tuning of the Llama-3.2-1B shape with
one all-reduce after backward (dist.bucket_mb = 0) and with bucketed, overlapped all-reduces, and full
fine-tuning of the 8B shape with ZeRO-1 (fits or OOM, tokens/s, peak memory); plus the checks that a failing
rank ends the job in seconds and that -np N matches -np 1 x grad_accum N within bf16 tolerance.

  python3 bench/scaling.py --hsloth build-gpu/hsloth --out $OUT            (GPU machine, 2+ GPUs)
  python3 bench/scaling.py --hsloth build/hsloth --out /tmp/s --dry-run    (CPU: tiny shapes, the same logic)

Models: random bf16 weights in the published shapes, written by bench/train_vs_peers.py's make_model (one 8B
folder, written once on the CPU in the background while the 1B cases run, and reused by every 8B case).
Data: rows of exactly 2048 seeded random token ids (train_vs_peers.write_rows_jsonl, `hsloth prep --format
text --max-len 2048 --too-long truncate`); a micro-batch is BS rows packed (train.tokens_per_batch = BS x 2048),
grad_accum 1, so every GPU does the same work at every world size.
Timing: metrics.jsonl's per-step records after the warm-up steps: tokens/s = sum(tokens) / (elapsed_s[last] -
elapsed_s[warm-up]); peak = peak_mem_bytes (the rank-0 allocator's peak). Full fine-tuning runs are stopped
(SIGKILL to the job) once their timed steps are logged, so that no multi-GB checkpoint is written.
Scaling efficiency = tokens/s(N) / (N x tokens/s(1)).
Output: $OUT/scaling.json and $OUT/scaling.md (a markdown table). A global deadline (--budget-s) skips the
cases that would not fit, and says so.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train_vs_peers as tvp  # noqa: E402  (SHAPES, make_model, write_rows_jsonl, SEQ)

T0 = time.time()
failures = []


def say(*a):
    print(f"[{time.time() - T0:6.1f}s]", *a, flush=True)


def check(cond, what):
    say(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


class Bench:
    def __init__(self, a):
        self.a = a
        self.work = a.work or tempfile.mkdtemp(prefix="hs-scaling-")
        self.results = {"cases": {}, "checks": {}, "skipped": []}
        self.mpi = ["mpirun", "--allow-run-as-root", "--bind-to", "none", "-x", "PATH", "-x", "LD_LIBRARY_PATH"]
        if a.dry_run:
            self.mpi += ["--oversubscribe"]
        if a.dry_run:
            self.small, self.big, self.bs, self.warm, self.timed = "tiny-llama", "tiny-llama", 1, 1, 2
        else:
            self.small, self.big, self.bs, self.warm, self.timed = "llama3.2-1b", "llama3.1-8b", 4, 3, 6
        self.tpb = self.bs * tvp.SEQ

    # ------------------------------------------------------------------------------------------- set-up
    def tokenizer_dir(self, shape):
        fam = "qwen3" if tvp.SHAPES[shape]["model_type"] == "qwen3" else "llama"
        return os.path.join(self.a.testdata, "tokenizers", tvp.TOKENIZER[fam])

    def make_cmd(self, shape, out, device):
        return [sys.executable, os.path.join(HERE, "train_vs_peers.py"), "_make", "--shape", shape, "--dir", out,
                "--tokenizer", self.tokenizer_dir(shape), "--device", device]

    def setup(self):
        a = self.a
        self.models = {}
        # The 8B folder on the CPU in the background (4 threads: the 1B timings keep the rest of the cores).
        self.big_dir = os.path.join(self.work, "model-big")
        self.big_proc = None
        if self.big != self.small:
            if os.path.exists(os.path.join(self.big_dir, "config.json")):
                say(f"reusing {self.big_dir}")
            else:
                env = dict(os.environ, OMP_NUM_THREADS="4", CUDA_VISIBLE_DEVICES="")
                self.big_log = open(os.path.join(self.work, "make-big.log"), "w")
                self.big_proc = subprocess.Popen(self.make_cmd(self.big, self.big_dir, "cpu"), env=env,
                                                 stdout=self.big_log, stderr=subprocess.STDOUT)
                say(f"writing the {self.big} folder in the background")
        self.small_dir = os.path.join(self.work, "model-small")
        if not os.path.exists(os.path.join(self.small_dir, "config.json")):
            subprocess.run(self.make_cmd(self.small, self.small_dir, "cpu" if a.dry_run else "cuda"), check=True)
        if self.big == self.small:
            self.big_dir = self.small_dir
        # Rows: enough for the longest run (N GPUs x (warm-up + timed + 2) steps x BS rows), and one shard folder.
        rows = a.gpus * (self.warm + self.timed + 2) * self.bs
        jsonl = os.path.join(self.work, "rows.jsonl")
        tvp.write_rows_jsonl(os.path.join(self.tokenizer_dir(self.small), "tokenizer.json"), rows, jsonl)
        self.shards = os.path.join(self.work, "shards")
        shutil.rmtree(self.shards, ignore_errors=True)
        r = subprocess.run([a.hsloth, "prep", "--input", jsonl, "--tokenizer", self.small_dir, "--out", self.shards,
                            "--format", "text", "--max-len", str(tvp.SEQ), "--too-long", "truncate"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"prep failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        say(f"{rows} rows of {tvp.SEQ} tokens in {self.shards}")

    def wait_big(self):
        if self.big_proc is not None:
            say(f"waiting for the {self.big} folder")
            rc = self.big_proc.wait()
            self.big_proc = None
            if rc != 0:
                raise SystemExit(f"writing {self.big} failed (see {self.work}/make-big.log)")
            say(f"{self.big} folder ready")

    # ------------------------------------------------------------------------------------------- runs
    def train(self, name, model_dir, np, finetune, steps, accum=1, extra=None, env=None, stop_after=None,
              timeout=600):
        """One `hsloth train` job; returns (returncode, log, seconds, metrics records). stop_after=K: SIGKILL
        the job once K step records are in metrics.jsonl (no final checkpoint)."""
        run_dir = os.path.join(self.work, "runs", name)
        shutil.rmtree(run_dir, ignore_errors=True)
        keys = {"model.path": model_dir, "data.train": self.shards, "run.dir": run_dir, "finetune": finetune,
                "lora.r": tvp.LORA_R, "lora.alpha": tvp.LORA_ALPHA, "lora.dropout": 0,
                "lora.targets": ",".join(tvp.TARGETS), "train.lr": tvp.LR, "train.schedule": "constant",
                "train.warmup_steps": 0, "train.max_steps": steps, "train.tokens_per_batch": self.tpb,
                "train.grad_accum": accum, "train.seed": 3, "log.every": 1, "dist.check_every": 0,
                "eval.every": 0}
        if self.a.dry_run:
            keys["model.dtype"] = "fp32"
        keys.update(extra or {})
        args = [self.a.hsloth, "train"]
        for k, v in keys.items():
            args += [f"--{k}", str(v)]
        cmd = ([*self.mpi, "-np", str(np)] if np > 1 else []) + args
        t0 = time.time()
        log_path = os.path.join(self.work, f"{name}.log")
        with open(log_path, "w") as logf:
            p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            killed = False
            while p.poll() is None:
                time.sleep(0.5)
                if time.time() - t0 > timeout or (stop_after and len(self.steps(run_dir)) >= stop_after):
                    os.killpg(p.pid, signal.SIGKILL)
                    killed = time.time() - t0 <= timeout
                    p.wait()
            rc = 0 if killed else p.returncode
        log = open(log_path, errors="replace").read()
        return rc, log, time.time() - t0, self.steps(run_dir)

    @staticmethod
    def steps(run_dir):
        path = os.path.join(run_dir, "metrics.jsonl")
        if not os.path.exists(path):
            return []
        out = []
        for line in open(path):
            try:
                m = json.loads(line)
            except ValueError:
                continue  # a line being written
            if "loss" in m:
                out.append(m)
        return out

    def measure(self, case, np, model_dir, finetune, extra=None, stop=False):
        name = f"{case}-np{np}"
        n = self.warm + self.timed
        rc, log, secs, ms = self.train(name, model_dir, np, finetune, n, extra=extra, stop_after=n if stop else None)
        rec = {"np": np, "wall_s": secs, "exit": rc}
        if rc != 0 or len(ms) < n:
            oom = "out of GPU memory" in log or "OutOfMemory" in log
            rec["status"] = "OOM" if oom else "failed"
            rec["log_tail"] = log[-1500:]
            peaks = [m["peak_mem_bytes"] for m in ms]
            if peaks:
                rec["peak_mem_bytes"] = max(peaks)
            say(f"{name}: {rec['status']} (exit {rc}, {len(ms)} steps)")
            if not oom:
                print(log[-3000:])
            return rec
        timed = ms[self.warm:]
        dt = timed[-1]["elapsed_s"] - ms[self.warm - 1]["elapsed_s"]
        tps = sum(m["tokens"] for m in timed) / dt
        rec.update(status="ok", tokens_per_s=tps, tokens_per_s_per_gpu=tps / np,
                   peak_mem_bytes=max(m["peak_mem_bytes"] for m in ms), mfu=timed[-1].get("mfu"),
                   loss=[m["loss"] for m in ms])
        for line in log.splitlines():
            if "gradient all-reduce:" in line or "ZeRO-1:" in line:
                rec.setdefault("notes", []).append(line.split("] ", 1)[-1].strip())
        say(f"{name}: {tps:,.0f} tok/s ({tps / np:,.0f} per GPU), peak {rec['peak_mem_bytes'] / 2**30:.1f} GiB")
        return rec

    def case(self, case, what, runs):
        """runs: [(label, np, model_dir, finetune, extra, stop)]; the -np 1 run is the efficiency basis."""
        if time.time() - T0 > self.a.budget_s:
            self.results["skipped"].append(case)
            say(f"skipping {case}: past the {self.a.budget_s}s budget")
            return
        out = {"what": what, "runs": {}}
        base = None
        for label, np, model_dir, finetune, extra, stop in runs:
            rec = self.measure(f"{case}-{label}", np, model_dir, finetune, extra, stop)
            if np == 1 and rec.get("status") == "ok":
                base = rec["tokens_per_s_per_gpu"]
            if rec.get("status") == "ok" and base:
                rec["scaling_efficiency"] = rec["tokens_per_s_per_gpu"] / base
            out["runs"][label] = rec
        self.results["cases"][case] = out
        self.save()

    # ------------------------------------------------------------------------------------------- checks
    def check_equivalence(self):
        n = self.a.gpus
        steps = 4
        r1 = self.train("equiv-accum", self.small_dir, 1, "lora", steps, accum=n)
        rn = self.train("equiv-world", self.small_dir, n, "lora", steps, accum=1)
        if r1[0] != 0 or rn[0] != 0:
            print(r1[1][-2000:], rn[1][-2000:])
            check(False, "equivalence runs exit 0")
            return
        a = [m["loss"] for m in r1[3]]
        b = [m["loss"] for m in rn[3]]
        worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
        self.results["checks"]["equivalence"] = {"world": n, "loss_np1_accum": a, "loss_npN": b, "worst_rel": worst}
        check(len(a) == len(b) == steps and worst <= 0.02,
              f"-np {n} vs -np 1 x grad_accum {n} (LoRA, {self.small}): per-step loss within {worst:.2e} (bound 2e-2)")

    def check_failure(self):
        env = dict(os.environ, HSLOTH_FAIL_AT="1:3")
        rc, log, secs, _ = self.train("fail", self.small_dir, 2, "lora", 10, env=env, timeout=120)
        self.results["checks"]["failing_rank"] = {"exit": rc, "seconds": secs}
        check(rc != 0 and secs < 30 and "injected failure at step 3" in log,
              f"-np 2 with rank 1 failing at step 3: exit {rc} after {secs:.1f}s with its message")

    # ------------------------------------------------------------------------------------------- main
    def run(self):
        a = self.a
        n = a.gpus
        self.setup()
        self.results.update(gpus=n, tokens_per_batch=self.tpb, warmup_steps=self.warm, timed_steps=self.timed,
                            small=self.small, big=self.big, dry_run=a.dry_run)
        try:
            import torch
            if torch.cuda.is_available():
                self.results["gpu"] = torch.cuda.get_device_name(0)
        except ImportError:
            pass
        self.check_equivalence()
        self.check_failure()
        full1 = {"train.grad_ckpt": "off"}
        self.case("full-small", f"full fine-tuning, {self.small}, {self.tpb} tokens/GPU/step",
                  [("np1", 1, self.small_dir, "full", full1, True),
                   ("one-allreduce", n, self.small_dir, "full", {**full1, "dist.bucket_mb": 0}, True),
                   ("overlap", n, self.small_dir, "full", {**full1, "dist.bucket_mb": 25}, True)])
        self.wait_big()
        ck = {"train.grad_ckpt": "on"}
        self.case("lora-big", f"LoRA r=16 all projections, {self.big}, grad_ckpt on, {self.tpb} tokens/GPU/step",
                  [("np1", 1, self.big_dir, "lora", ck, False), (f"np{n}", n, self.big_dir, "lora", ck, False)])
        self.case("qlora-big", f"QLoRA r=16 all projections, {self.big}, grad_ckpt on, {self.tpb} tokens/GPU/step",
                  [("np1", 1, self.big_dir, "qlora", ck, False), (f"np{n}", n, self.big_dir, "qlora", ck, False)])
        self.case("full-big-zero1", f"full fine-tuning, {self.big}, ZeRO-1 over {n} GPUs, grad_ckpt on",
                  [(f"np{n}", n, self.big_dir, "full", {**ck, "dist.shard_optimizer": "on"}, True)])
        self.save()
        return 1 if failures else 0

    def save(self):
        out = self.a.out
        if not out:
            return
        os.makedirs(out, exist_ok=True)
        self.results["failures"] = failures
        self.results["elapsed_s"] = time.time() - T0
        with open(os.path.join(out, "scaling.json"), "w") as f:
            json.dump(self.results, f, indent=2)
        lines = [f"Scaling on {self.results.get('gpu', 'CPU (dry run)')} x {self.a.gpus}, {self.tpb} tokens per GPU "
                 f"per step, {self.warm} warm-up + {self.timed} timed steps", "",
                 "| case | run | status | tok/s | tok/s per GPU | scaling eff. | peak GiB | notes |",
                 "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
        for case, c in self.results["cases"].items():
            for label, r in c["runs"].items():
                tps = f"{r['tokens_per_s']:,.0f}" if "tokens_per_s" in r else ""
                per = f"{r['tokens_per_s_per_gpu']:,.0f}" if "tokens_per_s_per_gpu" in r else ""
                eff = f"{r['scaling_efficiency'] * 100:.1f}%" if "scaling_efficiency" in r else ""
                peak = f"{r['peak_mem_bytes'] / 2**30:.1f}" if "peak_mem_bytes" in r else ""
                notes = "; ".join(r.get("notes", []))
                lines.append(f"| {case} | {label} (-np {r['np']}) | {r['status']} | {tps} | {per} | {eff} | {peak} | {notes} |")
        for k, v in self.results["checks"].items():
            lines.append(f"\n{k}: {json.dumps({x: y for x, y in v.items() if not isinstance(y, list)})}")
        if self.results["skipped"]:
            lines.append(f"\nskipped (time budget): {', '.join(self.results['skipped'])}")
        with open(os.path.join(out, "scaling.md"), "w") as f:
            f.write("\n".join(lines) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hsloth", required=True)
    p.add_argument("--testdata", default=os.environ.get("HSLOTH_TESTDATA",
                                                        os.path.join(HERE, "..", "..", "shared", "data")))
    p.add_argument("--out", default=os.environ.get("OUT", ""))
    p.add_argument("--work", default="", help="folder for models, shards and runs (reused when it holds them)")
    p.add_argument("--gpus", type=int, default=0, help="world size to compare with 1 (default: visible GPUs)")
    p.add_argument("--budget-s", type=float, default=480)
    p.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU: the logic, not the numbers")
    a = p.parse_args()
    a.hsloth = os.path.abspath(a.hsloth)
    a.testdata = os.path.abspath(a.testdata)
    if not a.gpus:
        if a.dry_run:
            a.gpus = 2
        else:
            import torch
            a.gpus = torch.cuda.device_count()
    if a.gpus < 2:
        print(f"need 2+ GPUs (or --dry-run); {a.gpus} visible")
        return 77
    b = Bench(a)
    rc = b.run()
    say("\n" + open(os.path.join(a.out, "scaling.md")).read() if a.out else "")
    say(f"{len(failures)} failure(s)" if failures else "all checks passed")
    return rc


if __name__ == "__main__":
    sys.exit(main())
