"""Trainer building blocks against independent oracles.

- LR schedules: transformers' get_{constant,linear,cosine}_schedule_with_warmup (via LambdaLR on a real
  optimizer), step by step, to 1e-15.
- AdamW over a flat fp32 buffer: torch.optim.AdamW(foreach=False) on the same parameters and gradients,
  bit-identical (same ops in the same order), with and without weight decay, including lr 0 steps.
- TensorBoard event files: read back by the tensorboard package's EventAccumulator.
"""
import math
import os
import subprocess
import sys
import tempfile

PROBE = sys.argv[1] if len(sys.argv) > 1 else ""
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def main():
    try:
        import torch
        import transformers
        from safetensors.torch import load_file, save_file
    except ImportError as e:
        print(f"oracle missing ({e}); skipping")
        return 77

    # ---- LR schedules
    for kind, fn in [("constant", "get_constant_schedule_with_warmup"), ("linear", "get_linear_schedule_with_warmup"),
                     ("cosine", "get_cosine_schedule_with_warmup")]:
        for peak, warmup, total in [(2e-4, 10, 100), (1e-3, 0, 37), (5e-5, 3, 3), (0.1, 7, 50)]:
            p = torch.nn.Parameter(torch.zeros(1))
            opt = torch.optim.SGD([p], lr=peak)
            f = getattr(transformers, fn)
            sched = f(opt, warmup) if kind == "constant" else f(opt, warmup, total)
            ref = []
            for _ in range(total + 5):
                ref.append(opt.param_groups[0]["lr"])
                opt.step()
                sched.step()
            out = subprocess.run([PROBE, "lr", kind, repr(peak), str(warmup), str(total), str(total + 5)],
                                 capture_output=True, text=True, check=True).stdout.split()
            ours = [float(x) for x in out]
            err = max(abs(a - b) for a, b in zip(ours, ref))
            check(len(ours) == len(ref) and err <= 1e-15 * peak,
                  f"lr {kind} peak={peak} warmup={warmup} total={total}: max |diff| {err:.3g}")

    # ---- AdamW, bit-identical to torch.optim.AdamW(foreach=False)
    g = torch.Generator().manual_seed(7)
    for wd in [0.0, 0.1]:
        n, steps = 1000, 12
        params = torch.randn(n, generator=g)
        grads = torch.randn(steps, n, generator=g) * torch.logspace(-4, 1, steps).unsqueeze(1)
        lrs = [0.0] + [1e-3 * (0.9 ** k) for k in range(steps - 1)]
        b1, b2, eps = 0.9, 0.95, 1e-8
        p = torch.nn.Parameter(params.clone())
        opt = torch.optim.AdamW([p], lr=lrs[0], betas=(b1, b2), eps=eps, weight_decay=wd, foreach=False, fused=False)
        for k in range(steps):
            opt.param_groups[0]["lr"] = lrs[k]
            p.grad = grads[k].clone()
            opt.step()
        st = opt.state[p]
        # The step runs a chunk of values at a time (it bounds its temporaries): any chunk, the same bits.
        for chunk in [None, 7, 333]:
            with tempfile.TemporaryDirectory() as d:
                save_file({"params": params, "grads": grads}, os.path.join(d, "in.safetensors"))
                subprocess.run([PROBE, "adamw", os.path.join(d, "in.safetensors"), os.path.join(d, "out.safetensors"),
                                repr(b1), repr(b2), repr(eps), repr(wd), ",".join(repr(x) for x in lrs)] +
                               ([str(chunk)] if chunk else []), check=True)
                out = load_file(os.path.join(d, "out.safetensors"))
            for name, ref in [("params", p.detach()), ("exp_avg", st["exp_avg"]), ("exp_avg_sq", st["exp_avg_sq"])]:
                diff = (out[name] - ref).abs().max().item()
                check(torch.equal(out[name], ref),
                      f"AdamW wd={wd} chunk={chunk or 'default'} {name}: bit-identical (max |diff| {diff:.3g})")

    # ---- TensorBoard
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        print("tensorboard missing; event-file check skipped")
    else:
        with tempfile.TemporaryDirectory() as d:
            subprocess.run([PROBE, "tensorboard", d, "25"], check=True, capture_output=True)
            acc = EventAccumulator(d)
            acc.Reload()
            tags = acc.Tags()["scalars"]
            check(sorted(tags) == ["train/loss", "train/lr"], f"tensorboard tags {tags}")
            loss = acc.Scalars("train/loss")
            check([e.step for e in loss] == list(range(25)), "tensorboard steps 0..24")
            check(all(math.isclose(e.value, 1.0 / (e.step + 1), rel_tol=1e-6) for e in loss), "train/loss values")
            lr = acc.Scalars("train/lr")
            check(all(math.isclose(e.value, e.step * 0.5, rel_tol=1e-6) for e in lr), "train/lr values")

    print(f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
