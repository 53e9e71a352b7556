#!/usr/bin/env python3
"""Where the time of one training step goes, by kernel class, from a Kineto Chrome trace.

The trace comes from `HSLOTH_PROFILE_STEP=N hsloth train ...` (rank 0 writes <run.dir>/profile/step_N.trace.json)
or from torch.profiler's export_chrome_trace. Every GPU event (cat "kernel", "gpu_memcpy", "gpu_memset") goes into
one class, the first rule that matches:

  communication           name has "nccl"
  optimizer               launched inside the trainer's "hsloth_optimizer" annotation (AdamW + pushing the
                          updated parameters), or multi_tensor_apply / adam / foreach kernels, or our adamw kernel
  attention               flash / fmha / attention / sdpa in the name, or launched under
                          scaled_dot_product_attention / a flash or efficient attention op (its softmax, bmm)
  GEMM (base), GEMM (LoRA, a dim <= R)
                          cutlass / cublas / gemm / sm90_xmma / nvjet / ampere_ / ...s16816 in the name; split by
                          the shapes of the CPU op that launched it (aten::mm [M,K]x[K,N] etc., recorded with
                          record_shapes): LoRA when any of the last two dims of any matrix operand is <= R
                          (--lora-dim, default 64). Kernels are linked to their op by the op's "External id"
                          (or, failing that, through the launching cuda_runtime event and the innermost CPU op
                          around it); GEMM kernels with no linked shapes go to "GEMM (no shapes)".
  norm/rope/act (fused, ours)
                          our kernels (hs::kernels::..., rms_norm*, swiglu*, rope*)
  loss                    our cross-entropy kernels, or log_softmax / softmax / logsumexp / nll_loss /
                          cross_entropy / scatter / gather kernels, or any kernel launched under a CPU op of
                          those names (so the casts and reductions inside the loss count as loss)
  copies                  memcpy / memset events, copy_ / cast (direct_copy) / fill kernels (zeroing included)
  elementwise (ATen)      ATen's elementwise / vectorized / reduce kernels (silu, mul, rsqrt, mean, ...)
  other                   the rest (embedding, index, cat, ...)

Step wall time = first GPU event start to last GPU event end on the compute stream (the stream with the most
non-NCCL kernel time); idle (GPU gaps) = wall time minus the union of every GPU event's busy interval (all
streams) inside it: the time the GPU waited for the host. Percentages are of the wall time; with overlapping
streams the classes can sum to more than 100%. With the "hsloth_step_N" annotation in the trace, the host's time
for the whole step and the GPU's idle time over it (gaps before the first and after the last kernel included)
are printed too.

usage: profile_summary.py TRACE.json[.gz] [--md] [--json OUT] [--lora-dim 64] [--top 15]
Exit 0 also for a trace without GPU events (a CPU run): it says "no GPU kernel events".
"""
import argparse
import bisect
import gzip
import json
import re
import sys
from collections import defaultdict

GPU_CATS = ("kernel", "gpu_memcpy", "gpu_memset")
CLASSES = ["GEMM (base)", "GEMM (LoRA)", "GEMM (no shapes)", "attention", "norm/rope/act (fused, ours)",
           "elementwise (ATen)", "loss", "optimizer", "communication", "copies", "other"]
OPT_ANNOTATION = "hsloth_optimizer"
STEP_ANNOTATION = re.compile(r"^hsloth_step_(\d+)$")

RE_NCCL = re.compile(r"nccl", re.I)
RE_ATTN = re.compile(r"flash|fmha|attention|_attn|sdpa", re.I)
RE_ATTN_OP = re.compile(r"scaled_?dot_?product|flash_?att|efficient_?att|cudnn_?att", re.I)
RE_GEMM = re.compile(r"cutlass|cublas|gemm|sm\d+_xmma|xmma_|nvjet|ampere_\w*(sgemm|hgemm|bf16)|s16816|s1688|"
                     r"sgemm|hgemm|gemv|splitKreduce", re.I)
RE_OURS = re.compile(r"hs::kernels|\brms_norm\w*_kernel|\bswiglu\w*_kernel|\brope\w*_kernel")
RE_OURS_NORM = re.compile(r"rms_norm|swiglu|rope", re.I)
RE_OURS_LOSS = re.compile(r"(::|\b)(\w*_)?(ce|xent|cross_entropy|lse|logsumexp|loss)(_\w*)?_kernel", re.I)
RE_OURS_OPT = re.compile(r"adam", re.I)
RE_LOSS = re.compile(r"log_?softmax|softmax|logsumexp|nll_?loss|cross_?entropy|scatter|gather", re.I)
RE_LOSS_OP = re.compile(r"cross_?entropy|log_?softmax|nll_?loss|logsumexp", re.I)
RE_OPT = re.compile(r"multi_tensor_apply|adam|foreach", re.I)
# Not "cast": ATen's elementwise kernels carry LoadWithCast / StoreWithCast in their names.
RE_COPY = re.compile(r"memcpy|memset|copy_kernel|direct_copy|copy_device_to_device|FillFunctor|fill_kernel|"
                     r"CatArrayBatchedCopy", re.I)
RE_ELEM = re.compile(r"elementwise|reduce_kernel|vectorized|functor|silu|gelu|rsqrt", re.I)


def load_events(path):
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt") as f:
            data = json.load(f)
    except OSError as e:
        raise SystemExit(f"error: cannot read {path}: {e}")
    except (json.JSONDecodeError, UnicodeDecodeError, EOFError) as e:
        raise SystemExit(f"error: {path} is not a Chrome trace (JSON): {e}\n"
                         "HINT: pass the step_N.trace.json that HSLOTH_PROFILE_STEP=N wrote into <run.dir>/profile/")
    events = data.get("traceEvents") if isinstance(data, dict) else data
    if not isinstance(events, list):
        raise SystemExit(f"error: {path} has no traceEvents list\nHINT: this is not a Kineto/Chrome trace")
    return [e for e in events if isinstance(e, dict)]


def interval(e):
    ts = float(e.get("ts", 0))
    return ts, ts + float(e.get("dur", 0))


def union_length(intervals, lo, hi):
    """Length of the union of [a, b) intervals clipped to [lo, hi)."""
    total, cur_a, cur_b = 0.0, None, None
    for a, b in sorted((max(a, lo), min(b, hi)) for a, b in intervals):
        if b <= a:
            continue
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        total += cur_b - cur_a
    return total


class OpIndex:
    """CPU ops per thread, nested by time: each op's parent, and the innermost op around a time."""

    EPS = 1e-3  # µs: Kineto rounds ts and dur, so a child may end a hair after its parent

    def __init__(self, cpu_ops):
        self.by_tid = defaultdict(list)
        for e in cpu_ops:
            self.by_tid[(e.get("pid"), e.get("tid"))].append(e)
        self.parent = {}
        self.starts = {}
        for key, ops in self.by_tid.items():
            ops.sort(key=lambda e: (float(e.get("ts", 0)), -float(e.get("dur", 0))))
            stack = []
            for e in ops:
                end = interval(e)[1]
                while stack and interval(stack[-1])[1] + self.EPS < end:  # the top does not contain e
                    stack.pop()
                self.parent[id(e)] = stack[-1] if stack else None
                stack.append(e)
            self.starts[key] = [float(e.get("ts", 0)) for e in ops]

    def innermost(self, pid, tid, t):
        """The innermost op of thread (pid, tid) running at time t (None when none is)."""
        key = (pid, tid)
        i = bisect.bisect_right(self.starts.get(key, []), t) - 1
        # The op starting last before t lies inside every op that contains t: walk up from it.
        op = self.by_tid[key][i] if i >= 0 else None
        while op is not None and interval(op)[1] + self.EPS < t:
            op = self.parent.get(id(op))
        return op

    def ancestors(self, op):
        out = []
        while op is not None:
            out.append(op)
            op = self.parent.get(id(op))
        return out


def gemm_dims(op):
    """Last two dims of every matrix operand of the op ([] when the op has no recorded shapes)."""
    dims = (op or {}).get("args", {}).get("Input Dims")
    out = []
    if isinstance(dims, list):
        for d in dims:
            if isinstance(d, list) and len(d) >= 2 and all(isinstance(x, int) for x in d):
                out.extend(d[-2:])
    return out


def cls_label(c, lora_dim):
    return f"GEMM (LoRA, a dim <= {lora_dim})" if c == "GEMM (LoRA)" else c


def short_name(name, width=110):
    n = re.sub(r"^void ", "", name)
    return n if len(n) <= width else n[:width - 3] + "..."


def summarize(events, lora_dim=64, top=15):
    cpu_ops = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("cpu_op", "user_annotation")]
    gpu = [e for e in events if e.get("ph") == "X" and e.get("cat") in GPU_CATS]
    runtime = {}
    for e in events:
        if e.get("ph") == "X" and e.get("cat") in ("cuda_runtime", "cuda_driver"):
            c = e.get("args", {}).get("correlation")
            if c is not None:
                runtime[c] = e
    step = None
    for e in cpu_ops:
        m = STEP_ANNOTATION.match(str(e.get("name", "")))
        if m and e.get("cat") == "user_annotation":
            step = {"step": int(m.group(1)), "host_ms": float(e.get("dur", 0)) / 1e3, "window": interval(e)}
    if step:
        step_window = step.pop("window")
    out = {"gpu_events": len(gpu), "cpu_ops": sum(1 for e in cpu_ops if e.get("cat") == "cpu_op"), "step": step}
    if not gpu:
        out["message"] = "no GPU kernel events"
        return out

    by_ext = defaultdict(list)
    for e in cpu_ops:
        if e.get("cat") == "cpu_op":
            x = e.get("args", {}).get("External id")
            if x is not None:
                by_ext[x].append(e)
    index = OpIndex(cpu_ops)
    opt_windows = [interval(e) for e in cpu_ops if e.get("name") == OPT_ANNOTATION]

    linked = 0
    stats = {c: [0.0, 0] for c in CLASSES}
    per_kernel = defaultdict(lambda: [0.0, 0])
    for k in gpu:
        name = str(k.get("name", ""))
        args = k.get("args", {})
        rt = runtime.get(args.get("correlation"))
        # The launching CPU op: by External id (Kineto's external correlation), else the innermost op around
        # the runtime call that launched the kernel.
        op = None
        for x in (args.get("External id"), (rt or {}).get("args", {}).get("External id")):
            cands = by_ext.get(x) if x not in (None, 0, -1) else None  # 0: Kineto found no linked op
            if cands:
                op = next((c for c in cands if c.get("args", {}).get("Input Dims")), cands[0])
                break
        if op is None and rt is not None:
            op = index.innermost(rt.get("pid"), rt.get("tid"), float(rt.get("ts", 0)))
            while op is not None and op.get("cat") != "cpu_op":
                op = index.parent.get(id(op))
        if op is not None:
            linked += 1
        launch_t = float(rt.get("ts", 0)) if rt is not None else (float(op.get("ts", 0)) if op else None)
        chain = index.ancestors(op) if op is not None else []
        cls = classify(k, name, op, chain, launch_t, opt_windows, lora_dim)
        a, b = interval(k)
        stats[cls][0] += b - a
        stats[cls][1] += 1
        pk = per_kernel[(name, cls)]
        pk[0] += b - a
        pk[1] += 1

    # Compute stream: the most non-NCCL kernel time.
    stream_time = defaultdict(float)
    for k in gpu:
        if k.get("cat") == "kernel" and not RE_NCCL.search(str(k.get("name", ""))):
            a, b = interval(k)
            stream_time[k.get("args", {}).get("stream")] += b - a
    if not stream_time:
        for k in gpu:
            a, b = interval(k)
            stream_time[k.get("args", {}).get("stream")] += b - a
    compute = max(stream_time, key=stream_time.get)
    on_compute = [interval(k) for k in gpu if k.get("args", {}).get("stream") == compute]
    lo, hi = min(a for a, _ in on_compute), max(b for _, b in on_compute)
    wall = hi - lo
    busy = union_length([interval(k) for k in gpu], lo, hi)
    idle = wall - busy
    if step:  # the GPU's idle time over the whole step as the host ran it (GPU and CPU share Kineto's clock)
        a, b = step_window
        step["gpu_idle_ms"] = (b - a - union_length([interval(k) for k in gpu], a, b)) / 1e3

    rows = []
    for c in CLASSES:
        t, n = stats[c]
        if n == 0 and c in ("GEMM (no shapes)",):
            continue
        rows.append({"class": cls_label(c, lora_dim), "ms": t / 1e3, "pct": 100.0 * t / wall if wall > 0 else 0.0, "count": n})
    rows.append({"class": "idle (GPU gaps)", "ms": idle / 1e3, "pct": 100.0 * idle / wall if wall > 0 else 0.0,
                 "count": None})
    tops = sorted(per_kernel.items(), key=lambda kv: -kv[1][0])[:top]
    notes = []
    gemm_total = stats["GEMM (base)"][1] + stats["GEMM (LoRA)"][1] + stats["GEMM (no shapes)"][1]
    if gemm_total and stats["GEMM (no shapes)"][1]:
        notes.append(f"{stats['GEMM (no shapes)'][1]} of {gemm_total} GEMM kernels have no linked CPU op with input "
                     "shapes (record_shapes off, or the kernel-to-op link is missing from the trace): they are not "
                     "split into base and LoRA")
    if linked == 0:
        notes.append("no kernel is linked to a CPU op (no External id / correlation in the trace): the GEMM split "
                     "and the loss/optimizer attribution by op are unavailable")
    out.update({
        "compute_stream": compute,
        "wall_ms": wall / 1e3,
        "busy_ms": busy / 1e3,
        "idle_ms": idle / 1e3,
        "kernels_linked_to_ops": linked,
        "classes": rows,
        "top_kernels": [{"name": n, "ms": v[0] / 1e3, "pct": 100.0 * v[0] / wall if wall > 0 else 0.0,
                         "count": v[1], "class": cls_label(c, lora_dim)} for (n, c), v in tops],
        "notes": notes,
    })
    return out


def classify(k, name, op, chain, launch_t, opt_windows, lora_dim):
    ops = [o for o in chain if o.get("cat") == "cpu_op"]  # the launching op and the ATen ops around it
    if RE_NCCL.search(name):
        return "communication"
    if launch_t is not None and any(a <= launch_t <= b for a, b in opt_windows):
        return "optimizer"
    if k.get("cat") != "kernel":
        return "copies"
    if RE_ATTN.search(name) or any(RE_ATTN_OP.search(str(o.get("name", ""))) for o in ops):
        return "attention"
    if RE_OURS.search(name):
        if RE_OURS_NORM.search(name):
            return "norm/rope/act (fused, ours)"
        if RE_OURS_OPT.search(name):
            return "optimizer"
        if RE_OURS_LOSS.search(name):
            return "loss"
    if RE_GEMM.search(name):
        dims = gemm_dims(op)
        if not dims:
            return "GEMM (no shapes)"
        return "GEMM (LoRA)" if min(dims) <= lora_dim else "GEMM (base)"
    if RE_LOSS.search(name) or any(RE_LOSS_OP.search(str(o.get("name", ""))) for o in ops):
        return "loss"
    if RE_OPT.search(name):
        return "optimizer"
    if RE_COPY.search(name):
        return "copies"
    if RE_ELEM.search(name):
        return "elementwise (ATen)"
    return "other"


def print_text(path, s, top):
    print(f"profile: {path}")
    if s.get("step"):
        st = s["step"]
        idle = (f"; the GPU idles {st['gpu_idle_ms']:.3f} ms of it "
                f"({100.0 * st['gpu_idle_ms'] / st['host_ms']:.1f}%)") if "gpu_idle_ms" in st and st["host_ms"] > 0 else ""
        print(f"step {st['step']}: host time {st['host_ms']:.3f} ms (the hsloth_step annotation){idle}")
    if s.get("message"):
        print(f"{s['message']} ({s['cpu_ops']} CPU ops): a CPU-only trace; open it in chrome://tracing or "
              "https://ui.perfetto.dev")
        return
    print(f"GPU step wall time {s['wall_ms']:.3f} ms (first to last GPU event on stream {s['compute_stream']}), "
          f"busy {s['busy_ms']:.3f} ms, {s['gpu_events']} GPU events, {s['kernels_linked_to_ops']} linked to CPU ops")
    print(f"{'class':34s} {'GPU ms':>10s} {'% wall':>7s} {'kernels':>8s}")
    for r in s["classes"]:
        cnt = "" if r["count"] is None else str(r["count"])
        print(f"{r['class']:34s} {r['ms']:10.3f} {r['pct']:6.1f}% {cnt:>8s}")
    print(f"\ntop {top} kernels by GPU time")
    print(f"{'GPU ms':>10s} {'% wall':>7s} {'count':>6s}  {'class':28s} name")
    for r in s["top_kernels"]:
        print(f"{r['ms']:10.3f} {r['pct']:6.1f}% {r['count']:6d}  {r['class']:28s} {short_name(r['name'])}")
    for n in s["notes"]:
        print(f"note: {n}")


def print_md(path, s, top):
    if s.get("message"):
        print(f"{s['message']} in `{path}` ({s['cpu_ops']} CPU ops)")
        return
    step = f"step {s['step']['step']}, " if s.get("step") else ""
    host = ""
    if s.get("step") and "gpu_idle_ms" in s["step"]:
        host = f"; host step {s['step']['host_ms']:.2f} ms, GPU idle {s['step']['gpu_idle_ms']:.2f} ms of it"
    print(f"Profile of one step ({step}GPU wall {s['wall_ms']:.2f} ms{host}; `{path}`):\n")
    print("| kernel class | GPU ms | % of step | kernels |")
    print("| --- | ---: | ---: | ---: |")
    for r in s["classes"]:
        cnt = "" if r["count"] is None else str(r["count"])
        print(f"| {r['class']} | {r['ms']:.2f} | {r['pct']:.1f}% | {cnt} |")
    print(f"\nTop {top} kernels:\n")
    print("| GPU ms | % of step | count | class | kernel |")
    print("| ---: | ---: | ---: | --- | --- |")
    for r in s["top_kernels"]:
        n = short_name(r["name"], 90).replace("|", "\\|")
        print(f"| {r['ms']:.2f} | {r['pct']:.1f}% | {r['count']} | {r['class']} | `{n}` |")
    for n in s["notes"]:
        print(f"\nNote: {n}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--md", action="store_true", help="markdown tables (for bench/RESULTS.md)")
    ap.add_argument("--json", metavar="OUT", help="also write the summary as JSON ('-' = stdout only JSON)")
    ap.add_argument("--lora-dim", type=int, default=64, help="a GEMM with a matrix dim <= this is LoRA (64)")
    ap.add_argument("--top", type=int, default=15)
    a = ap.parse_args(argv)
    s = summarize(load_events(a.trace), a.lora_dim, a.top)
    if a.json == "-":
        json.dump(s, sys.stdout, indent=1)
        print()
        return 0
    if a.json:
        with open(a.json, "w") as f:
            json.dump(s, f, indent=1)
    (print_md if a.md else print_text)(a.trace, s, a.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
