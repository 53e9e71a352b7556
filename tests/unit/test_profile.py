#!/usr/bin/env python3
"""The step profile (issue #12, "where the time goes"): HSLOTH_PROFILE_STEP and bench/profile_summary.py.

summary: bench/profile_summary.py on tests/fixtures/profile/synthetic_step.trace.json, a hand-made Kineto-style
  trace with known kernel intervals (GPU times in µs, stream 7 unless noted):
    [2000,2020] sm90_xmma GEMM, its op aten::mm [4096,2048]x[2048,2048]            GEMM (base)     20
    [2020,2025] nvjet GEMM, aten::mm [4096,2048]x[2048,16]                         GEMM (LoRA)      5
    (idle 2025-2030)
    [2030,2034] cutlass s16816gemm, linked only through its cudaLaunchKernel to
                the innermost op around it, aten::addmm [4096,64]x[64,2048]         GEMM (LoRA)      4
    [2034,2040] ampere gemm with no link at all                                    GEMM (no shapes) 6
    [2040,2050] flash_fwd, [2050,2052] fmha_cutlassF (cutlass, but attention)       attention     10+2
    [2052,2054] softmax_warp_forward under aten::scaled_dot_product_attention       attention        2
    (idle 2054-2060)
    [2060,2063] hs rms_norm, [2063,2065] hs swiglu_fwd                              fused (ours)     5
    [2065,2069] ATen silu (LoadWithCast in its name: not a copy), [2069,2071] mean  elementwise      6
    [2071,2079] cunn_SoftMaxForward, [2079,2081] a sum reduce whose op is inside
                aten::cross_entropy_loss, [2081,2085] hs linear_ce_fwd              loss            14
    [2085,2095] nvjet, aten::mm [4096,16]x[16,2048] on the autograd thread          GEMM (LoRA)     10
    [2095,2097] Memcpy HtoD, [2097,2098] FillFunctor                                copies           3
    [2090,2111] ncclDevKernel_AllReduce on stream 20                               communication   21
    (compute stream idle 2098-2120; NCCL busy until 2111: idle 2111-2120)
    [2120,2133] lerp, addcdiv, direct_copy launched inside "hsloth_optimizer",
    [2133,2135] multi_tensor_apply FusedAdam (by name)                             optimizer       15
    (idle 2135-2140)
    [2140,2141] Memset, [2145,2147] direct_copy cast                               copies        1+2
    [2141,2145] indexSelectLargeIndex                                              other            4
  wall = 2147 - 2000 = 147; busy = 109 on stream 7 + 13 of NCCL outside it = 122; idle = 5+6+9+5 = 25.
  The host's hsloth_step_3 annotation spans [1000,2200]: 1.2 ms, of which the GPU idles 1200 - 122 = 1078 µs.
step: a 3-step tiny CPU run with HSLOTH_PROFILE_STEP=2 (and =1, the no-warm-up path) writes
  <run.dir>/profile/step_N.trace.json, names it in the log, the trace is valid JSON with input shapes, every CPU
  op in it lies inside the "hsloth_step_N" annotation (exactly that step), with "hsloth_optimizer" inside it;
  the losses and the final adapter are bit-identical to a run without profiling; the summary says "no GPU kernel
  events"; a bad value is an error with the fix, a step outside the run a warning.

usage: test_profile.py summary|step     (exit 77 = skipped: binary or oracle packages missing)
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
SCRIPT = os.path.join(SRC, "bench", "profile_summary.py")
FIXTURE = os.path.join(SRC, "tests", "fixtures", "profile", "synthetic_step.trace.json")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def summary_of(path, *extra):
    r = subprocess.run([sys.executable, SCRIPT, path, "--json", "-", *extra], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        return None
    return json.loads(r.stdout)


def test_summary():
    s = summary_of(FIXTURE)
    if s is None:
        check(False, "profile_summary.py runs on the synthetic trace")
        return
    near = lambda a, b: abs(a - b) < 1e-9  # noqa: E731
    check(s["compute_stream"] == 7, f"compute stream 7 (got {s['compute_stream']})")
    check(near(s["wall_ms"], 0.147), f"step wall 0.147 ms (got {s['wall_ms']})")
    check(near(s["busy_ms"], 0.122), f"busy 0.122 ms (got {s['busy_ms']})")
    check(near(s["idle_ms"], 0.025), f"idle 0.025 ms (got {s['idle_ms']})")
    want = {"GEMM (base)": (20, 1), "GEMM (LoRA, a dim <= 64)": (19, 3), "GEMM (no shapes)": (6, 1),
            "attention": (14, 3), "norm/rope/act (fused, ours)": (5, 2), "elementwise (ATen)": (6, 2),
            "loss": (14, 3), "optimizer": (15, 4), "communication": (21, 1), "copies": (6, 4), "other": (4, 1),
            "idle (GPU gaps)": (25, None)}
    got = {r["class"]: r for r in s["classes"]}
    check(set(got) == set(want), f"classes {sorted(got)}")
    for c, (us, n) in want.items():
        r = got.get(c)
        ok = r is not None and near(r["ms"], us / 1e3) and r["count"] == n and near(r["pct"], 100.0 * us / 147)
        check(ok, f"{c}: {us} µs, {n} kernels, {100.0 * us / 147:.2f}% of the wall (got {r})")
    check(s["kernels_linked_to_ops"] == 10, f"10 kernels linked to CPU ops (got {s['kernels_linked_to_ops']})")
    check(any("1 of 5 GEMM kernels have no linked CPU op" in n for n in s["notes"]),
          f"the unsplit GEMM is reported: {s['notes']}")
    top = s["top_kernels"]
    check(len(top) == 15 and top[0]["name"].startswith("ncclDevKernel") and near(top[0]["ms"], 0.021)
          and top[1]["class"] == "GEMM (base)", "top 15 kernels, the 21 µs NCCL kernel first, the base GEMM second")
    check(s["step"] is not None and s["step"]["step"] == 3 and near(s["step"]["host_ms"], 1.2)
          and near(s["step"]["gpu_idle_ms"], 1.078),
          f"host step 1.2 ms from hsloth_step_3 [1000,2200], the GPU idle 1200 - 122 µs of it (got {s['step']})")
    s32 = summary_of(FIXTURE, "--lora-dim", "32")
    got32 = {r["class"]: r for r in s32["classes"]} if s32 else {}
    check(s32 is not None and near(got32["GEMM (LoRA, a dim <= 32)"]["ms"], 0.015)
          and near(got32["GEMM (base)"]["ms"], 0.024), "--lora-dim 32 moves the rank-64 addmm into GEMM (base)")
    r = subprocess.run([sys.executable, SCRIPT, FIXTURE, "--md"], capture_output=True, text=True)
    check(r.returncode == 0 and "| GEMM (LoRA, a dim <= 64) | 0.02 | 12.9% | 3 |" in r.stdout
          and "| idle (GPU gaps) | 0.03 | 17.0% |  |" in r.stdout, "--md prints the markdown table")
    # Bad input: a clear message, no traceback.
    d = tempfile.mkdtemp(prefix="hs-profile-")
    try:
        bad = os.path.join(d, "bad.json")
        with open(bad, "w") as f:
            f.write("{not json")
        r = subprocess.run([sys.executable, SCRIPT, bad], capture_output=True, text=True)
        check(r.returncode == 1 and "is not a Chrome trace" in r.stderr and "Traceback" not in r.stderr,
              f"a broken file is one clear error: {r.stderr.strip()[:120]}")
        r = subprocess.run([sys.executable, SCRIPT, os.path.join(d, "missing.json")], capture_output=True, text=True)
        check(r.returncode == 1 and "cannot read" in r.stderr and "Traceback" not in r.stderr,
              "a missing file is one clear error")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def train(d, run, steps, env=None):
    e = dict(os.environ)
    e.pop("HSLOTH_PROFILE_STEP", None)
    e.update(env or {})
    args = [BIN, "train", "--model.path", f"{d}/model", "--data.train", f"{d}/shards/train", "--run.dir",
            f"{d}/{run}", "--lora.r", "4", "--lora.alpha", "8", "--train.lr", "5e-3", "--train.max_steps",
            str(steps), "--train.warmup_steps", "1", "--train.tokens_per_batch", "400", "--train.seed", "3",
            "--log.every", "1"]
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=e)


def losses(d, run):
    with open(f"{d}/{run}/metrics.jsonl") as f:
        return [(j["step"], j["loss"], j["grad_norm"]) for j in map(json.loads, f) if "loss" in j]


def adapter(d, run):
    with open(f"{d}/{run}/final/adapter_model.safetensors", "rb") as f:
        return f.read()


def check_trace(d, run, n, stderr):
    path = f"{d}/{run}/profile/step_{n}.trace.json"
    check(os.path.exists(path) and f"profile of step {n}" in stderr and path in stderr,
          f"HSLOTH_PROFILE_STEP={n}: {path} written and named in the log")
    check(sorted(os.listdir(f"{d}/{run}/profile")) == [f"step_{n}.trace.json"] if os.path.isdir(
        f"{d}/{run}/profile") else False, "profile/ holds that one trace (no .tmp left)")
    try:
        with open(path) as f:
            ev = json.load(f)["traceEvents"]
    except (OSError, ValueError, KeyError) as e:
        check(False, f"the trace is JSON with traceEvents ({e})")
        return None
    ops = [e for e in ev if e.get("ph") == "X" and e.get("cat") == "cpu_op"]
    ann = {e["name"]: e for e in ev if e.get("ph") == "X" and e.get("cat") == "user_annotation"}
    step = ann.get(f"hsloth_step_{n}")
    opt = ann.get("hsloth_optimizer")
    check(len(ops) > 50 and step is not None and opt is not None,
          f"{len(ops)} CPU ops, annotations {sorted(ann)}")
    if step is None or opt is None:
        return None
    a, b = step["ts"], step["ts"] + step["dur"]
    eps = 1.0  # µs
    outside = [e["name"] for e in ops if e["ts"] < a - eps or e["ts"] + e["dur"] > b + eps]
    check(not outside, f"every CPU op lies inside hsloth_step_{n} (exactly one step): outside {outside[:5]}")
    check(a <= opt["ts"] and opt["ts"] + opt["dur"] <= b + eps and any(
        e["name"] in ("aten::lerp_", "aten::addcdiv_") and opt["ts"] <= e["ts"] <= opt["ts"] + opt["dur"]
        for e in ops), "hsloth_optimizer lies inside the step and holds AdamW's lerp_/addcdiv_")
    check(any(e["name"] == "aten::mm" and e.get("args", {}).get("Input Dims") for e in ops)
          and any(e.get("args", {}).get("External id") is not None for e in ops),
          "input shapes (record_shapes) and External ids are in the trace")
    return path


def test_step():
    code = script_env.missing(BIN)
    if code is not None:
        return code
    import hf_models

    d = tempfile.mkdtemp(prefix="hs-profile-step-")
    try:
        hf_models.make_with_demo_data(d, {"model": {}}, train=32, evals=4)
        r = subprocess.run([BIN, "prep", "--input", f"{d}/demo/train.jsonl", "--tokenizer", f"{d}/model", "--out",
                            f"{d}/shards/train", "--loss", "response", "--template", "chatml"], capture_output=True,
                           text=True)
        if r.returncode != 0:
            print(r.stdout, r.stderr)
            return 1
        ref = train(d, "ref", 3)
        check(ref.returncode == 0 and not os.path.exists(f"{d}/ref/profile"),
              f"without HSLOTH_PROFILE_STEP: exit {ref.returncode}, no profile/ folder")
        if ref.returncode != 0:
            print(ref.stderr[-3000:])
            return 1

        r = train(d, "p2", 3, {"HSLOTH_PROFILE_STEP": "2"})
        check(r.returncode == 0, f"HSLOTH_PROFILE_STEP=2: exit {r.returncode}")
        if r.returncode != 0:
            print(r.stderr[-3000:])
        path = check_trace(d, "p2", 2, r.stderr)
        check(r.returncode == 0 and losses(d, "p2") == losses(d, "ref") and adapter(d, "p2") == adapter(d, "ref"),
              "profiling changes no number: losses, grad norms and the final adapter are bit-identical")
        if path:
            s = subprocess.run([sys.executable, SCRIPT, path], capture_output=True, text=True)
            check(s.returncode == 0 and "no GPU kernel events" in s.stdout and "Traceback" not in s.stderr,
                  f"profile_summary.py on the CPU trace: {s.stdout.strip().splitlines()[-1] if s.stdout else s.stderr}")

        r = train(d, "p1", 2, {"HSLOTH_PROFILE_STEP": "1"})
        check(r.returncode == 0, f"HSLOTH_PROFILE_STEP=1 (no warm-up step): exit {r.returncode}")
        check_trace(d, "p1", 1, r.stderr)

        r = train(d, "p9", 2, {"HSLOTH_PROFILE_STEP": "9"})
        check(r.returncode == 0 and "HSLOTH_PROFILE_STEP=9 is outside the steps this run trains (1..2)" in r.stderr
              and not os.path.exists(f"{d}/p9/profile"), "a step outside the run: a warning, no profile")

        r = train(d, "pbad", 2, {"HSLOTH_PROFILE_STEP": "two"})
        check(r.returncode != 0 and "HSLOTH_PROFILE_STEP='two' is not a step number" in r.stderr
              and "HSLOTH_PROFILE_STEP=5" in r.stderr, f"a bad value is an error with the fix (exit {r.returncode})")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return 0


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "summary"
    rc = test_summary() if what == "summary" else test_step()
    if rc:
        return rc
    print(f"{len(failures)} failure(s)" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
