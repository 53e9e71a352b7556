"""How close `hsloth plan` comes to what `hsloth train` measures: peak GPU memory and tokens/s, per configuration.

For each shape (random-weight HF folders in the published shapes, written by bench/train_vs_peers.py's
make_model; 2048-token rows prepped by `hsloth prep` as that script does) and each configuration (finetune
lora / qlora / full, grad_ckpt off / on, two train.tokens_per_batch), it runs

  hsloth plan --config RUN.ini --gpu auto --json      (the prediction, for this machine's GPU)
  hsloth train --config RUN.ini --train.plan_check off (a few steps; stopped once the last step is logged)

and compares the plan's peak (memory.peak_bytes: the caching allocator's peak allocated, what train reports) with
metrics.jsonl's peak_mem_bytes of the last step, and the plan's tokens/s (speed.tokens_per_s) with the timed
steps' tokens / wall time (elapsed_s after the warm-up steps, as bench/train_vs_peers.py measures it). A run
that runs out of memory is recorded as OOM next to what the plan said (fits or not). The issue's bounds: peak
within 10%, tokens/s within 20%.

  python3 bench/plan_accuracy.py --hsloth build-gpu/hsloth --out $OUT

Outputs: a table on stdout, $OUT/plan_accuracy.json (every record with the plan's whole JSON), $OUT/plan_accuracy.md
(the table for bench/RESULTS.md), $OUT/logs/. --budget stops starting new runs after that many seconds (the
table keeps what was measured).

--dry-run: no GPU. A tiny shape in place of each (tiny-llama for llama3.2-1b by default), every configuration with
1 and 2 rows per micro-batch, `hsloth plan --gpu h100` and `hsloth train` for 1 + 1 steps on the CPU (its peak is
the host's, its speed the CPU's: the errors mean nothing): proves the model writer, prep, the INI, the plan's JSON
and the metrics parsing; exits 1 when a configuration fails. Nothing here asserts a speed.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from train_vs_peers import SEQ, SHAPES, TARGETS, TOKENIZER, make_model, read_samples, write_rows_jsonl  # noqa: E402

# (shape, finetune, grad_ckpt, rows of 2048 per micro-batch); LoRA r = 16. 1B-class shapes: lora / qlora / full x ckpt off / on
# x 4 and 8 rows; the 8B shape last (writing it is slow): LoRA and QLoRA, two settings each.
SMALL = [(f, c, bs) for f in ("lora", "qlora", "full") for c in ("off", "on") for bs in (4, 8)]
BIG = [("lora", "on", 4), ("lora", "off", 2), ("qlora", "on", 4), ("qlora", "off", 2)]
# 8B before Qwen3-0.6B: if --budget cuts the run short, the 1B and 8B shapes are in.
DEFAULT_SHAPES = "llama3.2-1b,llama3.1-8b,qwen3-0.6b"
TINY = {"llama3.2-1b": "tiny-llama", "qwen3-0.6b": "tiny-qwen3", "llama3.1-8b": "tiny-llama"}


def say(*a):
    print(*a, flush=True)


def gib(b):
    return None if b is None else b / 2**30


def err(pred, meas):
    if pred is None or meas is None or meas == 0:
        return None
    return 100.0 * (pred - meas) / meas


class Run:
    def __init__(self, a):
        self.a = a
        self.out = os.path.abspath(a.out)
        self.work = os.path.abspath(a.work)
        self.logs = os.path.join(self.out, "logs")
        os.makedirs(self.logs, exist_ok=True)
        os.makedirs(self.work, exist_ok=True)
        self.records = []
        self.t0 = time.time()
        self.models = {}
        self.shards = {}
        self.hung = set()

    def run(self, cmd, log, timeout, until_steps=None, metrics=None):
        """Runs cmd (its own process group) with output in `log`. With until_steps, ends it as soon as
        metrics.jsonl holds that many step records (the final checkpoint and save are not what is measured).
        Returns (rc, text, stopped_early)."""
        with open(log, "w") as f:
            f.write("$ " + " ".join(map(str, cmd)) + "\n")
            f.flush()
            p = subprocess.Popen(list(map(str, cmd)), stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
            t, early, rc = time.time(), False, None
            while True:
                rc = p.poll()
                if rc is not None:
                    break
                if until_steps and metrics and os.path.exists(metrics):
                    with open(metrics) as m:
                        n = sum(1 for x in m if '"loss"' in x and '"eval_loss"' not in x)
                    if n >= until_steps:
                        os.killpg(p.pid, signal.SIGKILL)
                        p.wait()
                        rc, early = 0, True
                        break
                if time.time() - t > timeout:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                    f.write(f"\nplan_accuracy: killed after {timeout}s\n")
                    rc = 124
                    break
                time.sleep(0.2)
        return rc, open(log, errors="replace").read(), early

    def model(self, shape):
        if shape in self.models:
            return self.models[shape]
        real = TINY[shape] if self.a.dry_run else shape
        d = os.path.join(self.work, f"model-{real}")
        fam = TOKENIZER[SHAPES[real]["model_type"]]
        tok = os.path.join(self.a.testdata, "tokenizers", fam)
        if not (self.a.reuse and os.path.exists(os.path.join(d, "config.json"))):
            shutil.rmtree(d, ignore_errors=True)
            t = time.time()
            rc, text, _ = self.run([sys.executable, os.path.join(HERE, "train_vs_peers.py"), "_make", "--shape", real,
                                    "--dir", d, "--tokenizer", tok, "--device", "cpu" if self.a.dry_run else "cuda"],
                                   os.path.join(self.logs, f"make-{real}.log"), 900)
            if rc != 0:
                raise SystemExit(f"writing {real} failed:\n{text[-2000:]}")
            say(f"  wrote {real} in {time.time() - t:.0f}s")
        self.models[shape] = (d, fam)
        return d, fam

    def shard(self, model_dir, fam, n_rows):
        key = (fam, n_rows)
        if key in self.shards:
            return self.shards[key]
        d = os.path.join(self.work, f"shards-{fam}-{n_rows}")
        if not (self.a.reuse and os.path.exists(os.path.join(d, "manifest.json"))):
            shutil.rmtree(d, ignore_errors=True)
            src = os.path.join(self.work, f"rows-{fam}-{n_rows}.jsonl")
            write_rows_jsonl(os.path.join(model_dir, "tokenizer.json"), n_rows, src)
            rc, text, _ = self.run([self.a.hsloth, "prep", "--input", src, "--tokenizer", model_dir, "--out", d,
                                    "--format", "text", "--max-len", SEQ, "--too-long", "truncate"],
                                   os.path.join(self.logs, f"prep-{fam}-{n_rows}.log"), 600)
            if rc != 0:
                raise SystemExit(f"hsloth prep failed:\n{text[-2000:]}")
        n = len(read_samples(d))
        if n != n_rows:
            raise SystemExit(f"{d}: {n} samples, expected {n_rows}")
        self.shards[key] = d
        return d

    def one(self, shape, finetune, ckpt, bs, r=16):
        a = self.a
        steps = a.steps_warmup + a.steps_timed
        model_dir, fam = self.model(shape)
        shards = self.shard(model_dir, fam, a.rows)
        tag = f"{shape}-{finetune}-ckpt{ckpt}-bs{bs}" + (f"-r{r}" if r != 16 else "")
        run_dir = os.path.join(self.work, f"run-{tag}")
        shutil.rmtree(run_dir, ignore_errors=True)
        ini = os.path.join(self.work, f"{tag}.ini")
        with open(ini, "w") as f:
            f.write(f"# {a.hsloth} train --config {ini}   (written by bench/plan_accuracy.py)\n"
                    f"finetune = {finetune}\n\n[model]\npath = {model_dir}\n\n[data]\ntrain = {shards}\n\n"
                    f"[run]\ndir = {run_dir}\n\n[lora]\nr = {r}\nalpha = {2 * r}\ndropout = 0\ntargets = {' '.join(TARGETS)}\n\n"
                    f"[train]\nlr = 1e-4\nschedule = constant\nwarmup_steps = 0\nmax_steps = {steps}\n"
                    f"tokens_per_batch = {bs * SEQ}\ngrad_accum = 1\nmax_grad_norm = 1.0\nseed = 0\npacking = packed\n"
                    f"grad_ckpt = {ckpt}\n\n[log]\nevery = 1\n")
        rec = dict(shape=shape, finetune=finetune, grad_ckpt=ckpt, tokens_per_batch=bs * SEQ, lora_r=r, ini=ini)
        gpu = "h100" if a.dry_run else "auto"
        rc, text, _ = self.run([a.hsloth, "plan", "--config", ini, "--gpu", gpu, "--json"],
                               os.path.join(self.logs, f"plan-{tag}.log"), 120)
        try:
            plan = json.loads(text[text.index("{"):])
        except ValueError:
            rec["error"] = f"plan failed (rc {rc}): " + text[-500:]
            return rec
        rec["plan"] = plan
        rec["pred_peak_gib"] = gib(plan["memory"]["peak_bytes"])
        rec["pred_fits"] = plan.get("fits")
        rec["pred_tok_s"] = plan["speed"]["tokens_per_s"] if plan.get("speed") else None
        rec["pred_mfu"] = plan["speed"]["mfu"] if plan.get("speed") else None
        metrics = os.path.join(run_dir, "metrics.jsonl")
        t = time.time()
        rc, text, early = self.run([a.hsloth, "train", "--config", ini, "--train.plan_check", "off"],
                                   os.path.join(self.logs, f"train-{tag}.log"), a.timeout, steps, metrics)
        rec["train_s"] = round(time.time() - t, 1)
        if rc != 0 and not early:
            oom = "out of GPU memory" in text or "out of memory" in text.lower()
            rec["error"] = "OOM" if oom else (f"timeout ({a.timeout}s)" if rc == 124 else f"rc {rc}: " + " | ".join(
                [ln for ln in text.splitlines() if ln.startswith(("error", "  hint", "hsloth"))][:2] or text.splitlines()[-2:]))
            return rec
        ms = [json.loads(x) for x in open(metrics) if x.strip()]
        ms = [m for m in ms if "loss" in m and "step" in m]
        w = a.steps_warmup
        if len(ms) < steps:
            rec["error"] = f"metrics.jsonl has {len(ms)} steps, expected {steps}"
            return rec
        dt = ms[steps - 1]["elapsed_s"] - (ms[w - 1]["elapsed_s"] if w > 0 else 0.0)
        timed = ms[w:steps]
        rec["meas_tok_s"] = sum(m["tokens"] for m in timed) / dt if dt > 0 else None
        rec["meas_peak_gib"] = gib(ms[steps - 1]["peak_mem_bytes"])
        rec["meas_mfu"] = ms[steps - 1].get("mfu")
        rec["peak_err_pct"] = err(rec["pred_peak_gib"], rec["meas_peak_gib"])
        rec["tok_s_err_pct"] = err(rec["pred_tok_s"], rec["meas_tok_s"])
        if not a.keep_runs:
            shutil.rmtree(run_dir, ignore_errors=True)
        return rec

    def main(self):
        a = self.a
        gpu = subprocess.run([sys.executable, "-c", "import torch, json; p = torch.cuda.get_device_properties(0) if "
                              "torch.cuda.is_available() else None; print(json.dumps({'name': p.name, 'memory_gib': "
                              "round(p.total_memory / 2**30, 1)} if p else {'name': 'cpu'}))"],
                             capture_output=True, text=True)
        try:
            self.gpu = json.loads(gpu.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            self.gpu = {"name": "unknown"}
        if self.gpu.get("name") == "cpu" and not a.dry_run:
            raise SystemExit("no CUDA device visible: this is a GPU benchmark (--dry-run checks it on the CPU)")
        v = subprocess.run([a.hsloth, "--version"], capture_output=True, text=True).stdout.strip()
        g = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        self.version = v + (f" (checkout {g.stdout.strip()})" if g.returncode == 0 else "")
        say(f"GPU: {self.gpu}; {self.version}")
        todo = a.configs or [(shape, f, c, bs, 16) for shape in a.shapes
                             for f, c, bs in (BIG if shape in ("llama3.1-8b", "qwen3-8b") else SMALL)]
        for shape, finetune, ckpt, bs, r in todo:
            if finetune not in a.finetunes:
                continue
            skip = dict(shape=shape, finetune=finetune, grad_ckpt=ckpt, tokens_per_batch=bs * SEQ, lora_r=r)
            if (shape, finetune) in self.hung:
                self.records.append(dict(skip, error="skipped (an earlier run of this finetune timed out)"))
                continue
            if time.time() - self.t0 > a.budget:
                self.records.append(dict(skip, error=f"skipped (--budget {a.budget}s)"))
                continue
            if a.dry_run:
                bs = max(1, bs // 4)  # 2048 / 4096 tokens: the CPU's float32 logits stay small
            rec = self.one(shape, finetune, ckpt, bs, r)
            if rec.get("error", "").startswith("timeout"):
                self.hung.add((shape, finetune))
            self.records.append(rec)
            self.line(rec)
            self.report(show=False)
        self.report(show=True)

    def line(self, r):
        f = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
        say(f"  {r['shape']:<12} {r['finetune']:<5} ckpt {r['grad_ckpt']:<3} {r['tokens_per_batch']:>6}: peak "
            f"{f(r.get('pred_peak_gib'), 2)} vs {f(r.get('meas_peak_gib'), 2)} GiB ({f(r.get('peak_err_pct'))}%), tok/s "
            f"{f(r.get('pred_tok_s'), 0)} vs {f(r.get('meas_tok_s'), 0)} ({f(r.get('tok_s_err_pct'))}%) "
            f"{r.get('error', '')} [{time.time() - self.t0:.0f}s]")

    def report(self, show):
        a = self.a
        f = lambda v, d=1: "-" if v is None else f"{v:,.{d}f}"  # noqa: E731
        head = ["shape", "finetune", "r", "ckpt", "tokens/batch", "plan peak GiB", "measured GiB", "peak err", "plan tok/s",
                "measured tok/s", "tok/s err", "note"]
        rows = []
        ok_peak = ok_tok = n_peak = n_tok = 0
        for r in self.records:
            pe, te = r.get("peak_err_pct"), r.get("tok_s_err_pct")
            if pe is not None:
                n_peak += 1
                ok_peak += abs(pe) <= 10
            if te is not None:
                n_tok += 1
                ok_tok += abs(te) <= 20
            note = r.get("error", "")
            if note == "OOM":
                note = "OOM (plan: " + ("fits" if r.get("pred_fits") else "does not fit") + ")"
            rows.append([r["shape"], r["finetune"], str(r.get("lora_r", 16)) if r["finetune"] != "full" else "-",
                         r["grad_ckpt"], f"{r['tokens_per_batch']:,}",
                         f(r.get("pred_peak_gib"), 2), f(r.get("meas_peak_gib"), 2),
                         "-" if pe is None else f"{pe:+.1f}%", f(r.get("pred_tok_s"), 0), f(r.get("meas_tok_s"), 0),
                         "-" if te is None else f"{te:+.1f}%", note])
        md = "| " + " | ".join(head) + " |\n|" + " --- |" * len(head) + "\n"
        md += "".join("| " + " | ".join(r) + " |\n" for r in rows)
        summary = (f"peak within 10%: {ok_peak}/{n_peak}; tokens/s within 20%: {ok_tok}/{n_tok}; GPU {self.gpu.get('name')}; "
                   f"{self.version}; {a.steps_warmup} warm-up + {a.steps_timed} timed steps of 2048-token rows, LoRA alpha = 2r "
                   f"on all seven projections; {time.time() - self.t0:.0f}s")
        md += "\n" + summary + "\n\nCommand: `python3 bench/plan_accuracy.py " + " ".join(a.argv) + "`\n"
        with open(os.path.join(self.out, "plan_accuracy.md"), "w") as fo:
            fo.write(md)
        with open(os.path.join(self.out, "plan_accuracy.json"), "w") as fo:
            json.dump({"gpu": self.gpu, "version": self.version, "argv": a.argv, "summary": summary,
                       "records": self.records}, fo, indent=1)
        if show:
            widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
            say("\n" + "  ".join(h.ljust(w) for h, w in zip(head, widths)))
            for r in rows:
                say("  ".join(c.ljust(w) for c, w in zip(r, widths)))
            say("\n" + summary)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hsloth", default="build/hsloth")
    p.add_argument("--shapes", default=DEFAULT_SHAPES, help="comma list of llama3.2-1b, qwen3-0.6b, llama3.1-8b")
    p.add_argument("--finetunes", default="lora,qlora,full")
    p.add_argument("--configs", default="", help="instead of the default grid: comma list of "
                   "SHAPE:FINETUNE:CKPT:ROWS[:R] (rows of 2048 per micro-batch, LoRA rank; e.g. qwen3-0.6b:full:on:6)")
    p.add_argument("--steps-warmup", type=int, default=2)
    p.add_argument("--steps-timed", type=int, default=4)
    p.add_argument("--rows", type=int, default=48, help="2048-token rows in the shard folder of each family")
    p.add_argument("--budget", type=float, default=440, help="no new run starts after this many seconds")
    p.add_argument("--timeout", type=int, default=90, help="seconds per train run (a timeout skips the rest of "
                   "that shape's runs of the same finetune)")
    p.add_argument("--out", default=os.environ.get("OUT", "/tmp/out"))
    p.add_argument("--work", default="/tmp/hs-plan-accuracy")
    p.add_argument("--testdata", default=os.environ.get("HSLOTH_TESTDATA") or os.path.join(HERE, "..", "testdata"))
    p.add_argument("--reuse", action="store_true", help="reuse model folders and shards already in --work")
    p.add_argument("--keep-runs", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="CPU: tiny shapes, plan --gpu h100, 1 + 1 train steps")
    a = p.parse_args(argv)
    a.argv = argv
    a.shapes = [s for s in a.shapes.split(",") if s]
    a.finetunes = [s for s in a.finetunes.split(",") if s]
    configs = []
    for item in [x for x in a.configs.split(",") if x]:
        f = item.split(":")
        if len(f) not in (4, 5) or f[0] not in TINY or f[1] not in ("lora", "qlora", "full") or \
                f[2] not in ("off", "on", "offload") or not f[3].isdigit() or (len(f) == 5 and not f[4].isdigit()):
            p.error(f"--configs item {item!r}: SHAPE:FINETUNE:CKPT:ROWS[:R], e.g. qwen3-0.6b:full:on:6")
        configs.append((f[0], f[1], f[2], int(f[3]), int(f[4]) if len(f) == 5 else 16))
    a.configs = configs
    for s in a.shapes:
        if s not in TINY:
            p.error(f"unknown shape {s}")
    if a.dry_run:
        if "--steps-warmup" not in argv:
            a.steps_warmup = 1
        if "--steps-timed" not in argv:
            a.steps_timed = 1
        if "--rows" not in argv:
            a.rows = 16
        if "--shapes" not in argv:
            a.shapes = ["llama3.2-1b"]
    if not (os.path.isfile(a.hsloth) and os.access(a.hsloth, os.X_OK)):
        p.error(f"--hsloth {a.hsloth} is not an executable")
    a.hsloth = os.path.abspath(a.hsloth)
    a.testdata = os.path.abspath(a.testdata)
    return a


if __name__ == "__main__":
    r = Run(parse(sys.argv[1:]))
    r.main()
    if r.a.dry_run and any("error" in x for x in r.records):
        sys.exit(1)
