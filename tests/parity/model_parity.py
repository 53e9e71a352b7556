"""Parity of the C++ decoder and LoRA with transformers + PEFT (the oracles, run here at test time).

For every architecture in hf_models.ARCHS (fp32, CPU), with the model_probe executable:
  * logits of a batch (relative error <= 1e-5) and the masked token-mean cross-entropy vs transformers' loss;
  * a packed batch (two samples in one row, cu_seqlens): logits and loss equal each sample run alone;
  * LoRA: PEFT saves an adapter with randomized A and B; we load it, and our LoRA gradients (every adapter
    tensor) match PEFT's on the same batch (<= 1e-5 in float64; in float32 within max(1e-5, 2x PEFT's own
    float32 error vs its float64 result)), logits too (<= 1e-5); the adapter merged in memory gives the
    adapted logits; re-saved by us, PEFT loads it and gives the same logits; our seeded init equals PEFT's
    get_peft_model after torch.manual_seed (A bitwise, B zero);
  * full fine-tuning gradients for every base tensor (two architectures);
  * broken adapters (missing / unexpected tensors, DoRA) are refused with a message naming the problem.
usage: model_parity.py PATH/TO/model_probe   (exit 77 when torch/transformers/peft are missing)
"""

import os
import subprocess
import sys
import tempfile

try:
    import torch
    import transformers  # noqa: F401
    import peft
    from safetensors.torch import load_file, save_file
except ImportError as e:  # the oracle is missing: skip
    print(f"skipping: {e}")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_models  # noqa: E402

TOL = 1e-5
failures = []


def rel(ours, ref):
    ours, ref = ours.double(), ref.double()
    denom = ref.norm().item()
    return (ours - ref).norm().item() / (denom if denom > 0 else 1.0)


def check(what, ours, ref, tol=TOL):
    e = rel(ours, ref)
    ok = e <= tol
    print(f"  {'ok ' if ok else 'FAIL'} {what}: rel err {e:.2e}")
    if not ok:
        failures.append(f"{what}: {e:.3e} > {tol}")


def expect(what, cond, detail=""):
    print(f"  {'ok ' if cond else 'FAIL'} {what} {detail}")
    if not cond:
        failures.append(f"{what} {detail}")


def probe(exe, *args, expect_fail=False):
    r = subprocess.run([exe, *map(str, args)], capture_output=True, text=True)
    if expect_fail:
        return r
    if r.returncode != 0:
        raise RuntimeError(f"model_probe failed ({r.returncode}): {r.stderr}")
    return r


def write_batch(path, input_ids, loss_mask=None, cu_seqlens=None, position_ids=None):
    t = {"input_ids": input_ids.to(torch.int64).contiguous()}
    if loss_mask is not None:
        t["loss_mask"] = loss_mask.to(torch.uint8).contiguous()
    if cu_seqlens is not None:
        t["cu_seqlens"] = torch.tensor(cu_seqlens, dtype=torch.int32)
    if position_ids is not None:
        t["position_ids"] = position_ids.to(torch.int64).contiguous()
    save_file(t, path)
    return path


def hf_loss_sum(model, ids, mask):
    """Sum of token cross-entropies over targets t with mask[t] = 1, and their count (transformers' logits)."""
    logits = model(ids).logits.float()
    lp = torch.log_softmax(logits[:, :-1], -1)
    tgt = ids[:, 1:]
    m = mask[:, 1:].bool()
    nll = -lp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    return nll[m].sum(), int(m.sum())


LORA_CASES = {  # arch -> (targets, use_rslora)
    "llama3_tied": (["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], False),
    "tinyllama": (["q_proj", "v_proj"], False),
    "llama_bias_linear": (["q_proj", "k_proj", "v_proj", "o_proj"], True),
    "mistral": (["gate_proj", "up_proj", "down_proj"], False),
    "qwen2": (["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], False),
    "qwen3": (["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], True),
}
FULL_FT = {"tinyllama", "qwen3"}


def peft_model_for(model_dir, targets, rslora, seed=None):
    from peft import LoraConfig, get_peft_model

    base = hf_models.load(model_dir)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=targets, lora_dropout=0.0, task_type="CAUSAL_LM",
                     use_rslora=rslora)
    if seed is not None:
        torch.manual_seed(seed)
    return get_peft_model(base, cfg)


def peft_grads(pm):
    out = {}
    for name, p in pm.named_parameters():
        if p.requires_grad:
            out[name.replace(".default", "")] = p.grad
    return out


def test_arch(exe, arch, tmp):
    print(f"[{arch}]")
    d = hf_models.make(arch, os.path.join(tmp, arch), seed=1)
    ref = hf_models.load(d)
    V = ref.config.vocab_size
    g = torch.Generator().manual_seed(7)

    # 1. plain batch: logits and loss
    ids = torch.randint(0, V, (2, 12), generator=g)
    mask = (torch.rand(2, 12, generator=g) > 0.3).to(torch.uint8)
    mask[:, 0] = 0
    mask[0, 5] = 1
    b = write_batch(os.path.join(tmp, f"{arch}_b.safetensors"), ids, mask)
    o = os.path.join(tmp, f"{arch}_o.safetensors")
    probe(exe, "--model", d, "--batch", b, "--out", o)
    out = load_file(o)
    with torch.no_grad():
        ref_logits = ref(ids).logits
        labels = ids.masked_fill(mask == 0, -100)
        ref_loss = ref(ids, labels=labels).loss
    check("logits", out["logits"], ref_logits)
    check("loss (token mean)", out["loss_sum"] / out["loss_count"], ref_loss)
    expect("loss token count", int(out["loss_count"]) == int(mask[:, 1:].sum()),
           f"{int(out['loss_count'])} vs {int(mask[:, 1:].sum())}")

    # 2. packed batch: row 0 = samples of 5 and 7 tokens, row 1 = one sample of 12
    s1, s2, s3 = (torch.randint(0, V, (n,), generator=g) for n in (5, 7, 12))
    packed = torch.stack([torch.cat([s1, s2]), s3])
    pmask = (torch.rand(2, 12, generator=g) > 0.2).to(torch.uint8)
    pmask[0, 0] = pmask[0, 5] = pmask[1, 0] = 0
    b = write_batch(os.path.join(tmp, f"{arch}_p.safetensors"), packed, pmask, cu_seqlens=[0, 5, 12, 24])
    probe(exe, "--model", d, "--batch", b, "--out", o)
    out = load_file(o)
    with torch.no_grad():
        sep = [ref(x.unsqueeze(0)).logits[0] for x in (s1, s2, s3)]
        ref_packed = torch.stack([torch.cat(sep[:2]), sep[2]])
        parts = [hf_loss_sum(ref, x.unsqueeze(0), m.unsqueeze(0))
                 for x, m in ((s1, pmask[0, :5]), (s2, pmask[0, 5:]), (s3, pmask[1]))]
    check("packed logits == samples run alone", out["logits"], ref_packed)
    check("packed loss sum", out["loss_sum"], sum(p[0] for p in parts))
    expect("packed loss count", int(out["loss_count"]) == sum(p[1] for p in parts))
    # the same packed row with explicit position ids gives the same logits
    pos = torch.stack([torch.cat([torch.arange(5), torch.arange(7)]), torch.arange(12)])
    b2 = write_batch(os.path.join(tmp, f"{arch}_p2.safetensors"), packed, pmask, cu_seqlens=[0, 5, 12, 24],
                     position_ids=pos)
    probe(exe, "--model", d, "--batch", b2, "--out", o)
    check("packed logits with explicit position ids", load_file(o)["logits"], ref_packed)

    # 3. LoRA against PEFT
    targets, rslora = LORA_CASES[arch]
    pm = peft_model_for(d, targets, rslora)
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    adir = os.path.join(tmp, f"{arch}_peft_adapter")
    pm.save_pretrained(adir)
    b = write_batch(os.path.join(tmp, f"{arch}_b.safetensors"), ids, mask)
    ours_dir = os.path.join(tmp, f"{arch}_our_adapter")
    probe(exe, "--model", d, "--adapter", adir, "--batch", b, "--out", o, "--grad", "--save-adapter", ours_dir)
    out = load_file(o)
    pm.zero_grad()
    res = pm(ids, labels=ids.masked_fill(mask == 0, -100))
    res.loss.backward()
    check("LoRA logits", out["logits"], res.logits.detach())
    check("LoRA loss", out["loss_sum"] / out["loss_count"], res.loss.detach())
    grads32 = peft_grads(pm)
    ours32 = {k[len("grad."):]: v for k, v in out.items() if k.startswith("grad.")}
    expect("LoRA gradient names == PEFT trainable parameters", set(ours32) == set(grads32),
           f"ours-only {sorted(set(ours32) - set(grads32))[:2]} peft-only {sorted(set(grads32) - set(ours32))[:2]}")
    expect("PEFT gradients non-trivial (A and B)", all(grads32[k].abs().max() > 0 for k in grads32))
    # Gradients in float64 on both sides (same weights, same batch): the exact comparison. In float32 a few
    # gradients through the softmax are ill-conditioned: PEFT's own float32 gradients differ from its float64
    # ones by up to ~2e-5, so our float32 gradients are held to max(1e-5, 2 x PEFT's own float32 error).
    # (SDPA attention here: transformers' eager attention takes its softmax in float32 even for float64.)
    from peft import PeftModel

    pm64 = PeftModel.from_pretrained(hf_models.load(d, dtype=torch.float64, attn="sdpa"), adir, is_trainable=True)
    pm64 = pm64.double()
    pm64(ids, labels=ids.masked_fill(mask == 0, -100)).loss.backward()
    grads64 = peft_grads(pm64)
    o64 = os.path.join(tmp, f"{arch}_o64.safetensors")
    probe(exe, "--model", d, "--adapter", adir, "--batch", b, "--out", o64, "--grad", "--dtype", "float64")
    out64 = load_file(o64)
    ours64 = {k[len("grad."):]: v for k, v in out64.items() if k.startswith("grad.")}
    check("LoRA logits (float64)", out64["logits"], pm64(ids).logits.detach())
    worst64 = max((rel(ours64[k], grads64[k]), k) for k in grads64 if k in ours64)
    ok = worst64[0] <= TOL and set(ours64) == set(grads64)
    print(f"  {'ok ' if ok else 'FAIL'} LoRA gradients, float64 ({len(grads64)} tensors): worst rel err {worst64[0]:.2e}")
    if not ok:
        failures.append(f"LoRA grad (float64) {worst64[1]}: {worst64[0]:.3e}")
    worst32, floor, bad = 0.0, 0.0, 0
    for k in grads64:
        if k not in ours32:
            continue
        peft_err = rel(grads32[k], grads64[k])
        ours_err = rel(ours32[k], grads64[k])
        floor = max(floor, peft_err)
        if ours_err > max(TOL, 2 * peft_err):
            bad += 1
            failures.append(f"LoRA grad (float32) {k}: {ours_err:.3e} vs PEFT float32's own {peft_err:.3e}")
        worst32 = max(worst32, ours_err)
    print(f"  {'ok ' if not bad else 'FAIL'} LoRA gradients, float32 vs float64 truth: ours worst {worst32:.2e}, "
          f"PEFT float32 worst {floor:.2e}")

    # merged in memory == adapted model
    probe(exe, "--model", d, "--adapter", adir, "--merge", "--batch", b, "--out", o)
    check("LoRA merged in memory", load_file(o)["logits"], res.logits.detach())

    # our re-saved adapter: identical tensors, and PEFT loads it to the same logits
    theirs = load_file(os.path.join(adir, "adapter_model.safetensors"))
    mine = load_file(os.path.join(ours_dir, "adapter_model.safetensors"))
    expect("re-saved adapter tensors identical", set(theirs) == set(mine) and all(torch.equal(theirs[k], mine[k]) for k in theirs))
    pm2 = PeftModel.from_pretrained(hf_models.load(d), ours_dir)
    with torch.no_grad():
        check("PEFT loads our adapter: logits", pm2(ids).logits, res.logits.detach())
    expect("PEFT reads our config (r, alpha, rslora)",
           pm2.peft_config["default"].r == 4 and pm2.peft_config["default"].lora_alpha == 8
           and pm2.peft_config["default"].use_rslora == rslora
           and set(pm2.peft_config["default"].target_modules) == set(targets))

    # 4. full fine-tuning gradients
    if arch in FULL_FT:
        probe(exe, "--model", d, "--full", "--batch", b, "--out", o, "--grad")
        out = load_file(o)
        ref.zero_grad()
        for p in ref.parameters():
            p.requires_grad_(True)
        ref(ids, labels=ids.masked_fill(mask == 0, -100)).loss.backward()
        hf = {n: p.grad for n, p in ref.named_parameters()}
        ours = {k[len("grad."):]: v for k, v in out.items() if k.startswith("grad.")}
        expect("full fine-tuning tensor names == transformers parameters", set(ours) == set(hf),
               f"{sorted(set(ours) ^ set(hf))[:3]}")
        worst = max((rel(ours[k], hf[k]), k) for k in hf if k in ours)
        ok = worst[0] <= TOL
        print(f"  {'ok ' if ok else 'FAIL'} full fine-tuning gradients ({len(hf)} tensors): worst {worst[0]:.2e} ({worst[1]})")
        if not ok:
            failures.append(f"full FT grad {worst[1]}: {worst[0]:.3e}")


def test_init(exe, tmp):
    print("[LoRA init vs PEFT get_peft_model after torch.manual_seed]")
    d = os.path.join(tmp, "tinyllama")
    for targets in (["q_proj", "v_proj"], ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]):
        a = os.path.join(tmp, "init_" + str(len(targets)))
        probe(exe, "--model", d, "--lora-r", 4, "--lora-alpha", 8, "--lora-targets", ",".join(targets),
              "--lora-seed", 1234, "--save-adapter", a)
        pm = peft_model_for(d, targets, False, seed=1234)
        theirs = {k.replace(".default", ""): v.detach() for k, v in pm.named_parameters() if "lora_" in k}
        mine = load_file(os.path.join(a, "adapter_model.safetensors"))
        expect(f"init tensor names ({len(targets)} targets)", set(mine) == set(theirs))
        same = all(torch.equal(mine[k], theirs[k]) for k in theirs if "lora_A" in k)
        zero = all(not mine[k].any() for k in mine if "lora_B" in k)
        expect(f"init A bitwise equal to PEFT's, B zero ({len(targets)} targets)", same and zero)


def test_bad_adapters(exe, tmp):
    print("[broken adapters are refused]")
    d = os.path.join(tmp, "tinyllama")
    src = os.path.join(tmp, "tinyllama_peft_adapter")
    tensors = load_file(os.path.join(src, "adapter_model.safetensors"))
    cfg = open(os.path.join(src, "adapter_config.json")).read()

    def variant(name, tensors_, cfg_text):
        p = os.path.join(tmp, name)
        os.makedirs(p, exist_ok=True)
        save_file(tensors_, os.path.join(p, "adapter_model.safetensors"), metadata={"format": "pt"})
        open(os.path.join(p, "adapter_config.json"), "w").write(cfg_text)
        return probe(exe, "--model", d, "--adapter", p, expect_fail=True)

    missing = dict(tensors)
    gone = sorted(missing)[0]
    missing.pop(gone)
    r = variant("bad_missing", missing, cfg)
    expect("missing tensor refused and named", r.returncode != 0 and gone in r.stderr and "missing" in r.stderr, r.stderr[-200:])
    extra = dict(tensors)
    extra["base_model.model.lm_head.lora_A.weight"] = torch.zeros(4, 64)
    r = variant("bad_extra", extra, cfg)
    expect("unexpected tensor refused and named", r.returncode != 0 and "lm_head.lora_A" in r.stderr, r.stderr[-200:])
    r = variant("bad_dora", tensors, cfg.replace('"use_dora": false', '"use_dora": true'))
    expect("DoRA refused by key", r.returncode != 0 and "use_dora" in r.stderr, r.stderr[-200:])
    shapes = dict(tensors)
    k = sorted(shapes)[0]
    shapes[k] = torch.zeros(shapes[k].shape[0] + 1, shapes[k].shape[1])
    r = variant("bad_shape", shapes, cfg)
    expect("misshaped tensor refused and named", r.returncode != 0 and k in r.stderr, r.stderr[-200:])


def main():
    if len(sys.argv) < 2:
        print("usage: model_parity.py MODEL_PROBE")
        return 2
    exe = sys.argv[1]
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    with tempfile.TemporaryDirectory(prefix="hs-model-parity-") as tmp:
        for arch in hf_models.ARCHS:
            test_arch(exe, arch, tmp)
        test_init(exe, tmp)
        test_bad_adapters(exe, tmp)
    if failures:
        print(f"{len(failures)} failure(s):")
        for f in failures:
            print("  " + f)
        return 1
    print("all model parity checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
