"""QLoRA (LoRA on a 4-bit NF4 base) on CPU in fp32, against transformers + PEFT + bitsandbytes as the oracle.

Model: a tiny random Llama written by transformers (hf_models; every projection's in_features a multiple of
64, where bitsandbytes' CPU dequantize_4bit is right), in fp32; data: the demo task prepped by `hsloth prep`.
The oracle model is transformers' with each of the seven projection weights W of every layer replaced by
bitsandbytes.functional.dequantize_4bit(quantize_4bit(W, nf4, blocksize 64, double quantization)).
A second folder is the same model as transformers + bitsandbytes save it pre-quantized
(BitsAndBytesConfig(load_in_4bit, nf4, double quant)): quantization_config and the NF4 tensors.

(a) eval: `hsloth eval --quant nf4` on the fp32 folder, and `hsloth eval` on the pre-quantized folder (no flag:
    it is what the folder is), equal the oracle's loss within 1e-5 relative; so does a folder pre-quantized from
    bf16 weights (quant_state dtype bf16, as the -bnb-4bit checkpoints); without --quant the loss differs.
    `hsloth generate --quant nf4 --greedy` gives the oracle's greedy tokens.
(b) train: `finetune = qlora` for a few steps, replayed by HF + PEFT on the oracle model (same LoRA init,
    one packed micro-batch per step, AdamW, linear warmup): per-step losses within 1e-4 relative, final
    adapter within 1e-3 (the LoRA parity test's bounds). On the pre-quantized folder the same run gives a
    bit-identical adapter; gradient checkpointing and a failed + resumed run do too.
(c) quantization_config other than bitsandbytes NF4 with double quantization (fp4, 8-bit, GPTQ, no double
    quant, a decoder module left unquantized) is an error naming the key; finetune = full on a 4-bit base too.
    PEFT also loads the adapter onto transformers' load_in_4bit model of the pre-quantized folder (bitsandbytes'
    Linear4bit on the CPU) with hsloth's eval loss within 1e-4 relative.
(d) merge: the adapter merged into the pre-quantized base (dequantized first, said in the log) is a dense
    folder without quantization_config that transformers loads, with PEFT's logits on the oracle model;
    `merge --quant nf4` from the fp32 folder writes the same tensors.
Exit 77 (skipped) when bitsandbytes (or another oracle package) or the hsloth binary is missing.
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
sys.path.insert(0, HERE)
failures = []
SEED, STEPS, LR, WARMUP, WD, CLIP, R, ALPHA = 3, 6, 5e-3, 2, 0.01, 1.0, 4, 8
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def hsloth(*args, check_rc=True, env=None, prefix=()):
    r = subprocess.run([*prefix, BIN, *map(str, args)], capture_output=True, text=True, timeout=600, env=env)
    if check_rc and r.returncode != 0:
        print(r.stdout, r.stderr)
        raise SystemExit(f"hsloth {args[0]} failed with {r.returncode}")
    return r


def train_args(d, model, run, **over):
    keys = {"finetune": "qlora", "model.path": f"{d}/{model}", "data.train": f"{d}/shards/train",
            "run.dir": f"{d}/{run}", "lora.r": R, "lora.alpha": ALPHA, "train.lr": LR, "train.schedule": "linear",
            "train.warmup_steps": WARMUP, "train.max_steps": STEPS, "train.tokens_per_batch": 100000,
            "train.max_grad_norm": CLIP, "train.weight_decay": WD, "train.seed": SEED, "log.every": 1}
    keys.update(over)
    out = ["train"]
    for k, v in keys.items():
        out += [f"--{k}", str(v)]
    return out


def read_samples(folder):
    import h5py
    import torch

    out = []
    manifest = json.load(open(f"{folder}/manifest.json"))
    for sh in manifest["shards"]:
        with h5py.File(os.path.join(folder, sh["file"]), "r") as f:
            ids, mask, off = f["input_ids"][:], f["loss_mask"][:], f["offsets"][:]
        for i in range(len(off) - 1):
            out.append((torch.tensor(ids[off[i]:off[i + 1]], dtype=torch.long),
                        torch.tensor(mask[off[i]:off[i + 1]], dtype=torch.bool)))
    return out


def oracle_model(model_dir, quant_dtype=None):
    """transformers' fp32 model with every projection weight replaced by its dequantized NF4 value. quant_dtype
    (e.g. bf16): the model as a folder saved in that dtype holds it (every weight rounded to it), quantized from
    it; default: as loaded, fp32."""
    import bitsandbytes.functional as F
    import torch

    import hf_models

    m = hf_models.load(model_dir)
    with torch.no_grad():
        if quant_dtype is not None:  # the folder's other tensors are stored in quant_dtype too
            for p in m.parameters():
                p.copy_(p.to(quant_dtype).to(torch.float32))
        for layer in m.model.layers:
            for mod in [layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj, layer.self_attn.o_proj,
                        layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj]:
                w = mod.weight.data.contiguous()
                q, st = F.quantize_4bit(w if quant_dtype is None else w.to(quant_dtype), quant_type="nf4",
                                        blocksize=64, compress_statistics=True)
                mod.weight.copy_(F.dequantize_4bit(q, st).to(torch.float32))
    return m


def loss_of(model, samples):
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for ids, mask in samples:
            logits = model(input_ids=ids.unsqueeze(0)).logits[0, :-1].float()
            m = mask[1:]
            total += torch.nn.functional.cross_entropy(logits[m], ids[1:][m], reduction="sum").item()
            count += int(m.sum())
    return total / count


def hf_replay(d, samples):
    """The QLoRA run in HF + PEFT on the oracle model (the LoRA parity test's replay)."""
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model

    base = oracle_model(f"{d}/model")
    torch.manual_seed(SEED)
    pm = get_peft_model(base, LoraConfig(r=R, lora_alpha=ALPHA, target_modules=TARGETS, lora_dropout=0.0,
                                         task_type="CAUSAL_LM"))
    pm.train()
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=WD, foreach=False)
    sched = transformers.get_linear_schedule_with_warmup(opt, WARMUP, STEPS)
    count = sum(int(mask[1:].sum()) for _, mask in samples)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        total = 0.0
        for ids, mask in samples:
            logits = pm(input_ids=ids.unsqueeze(0)).logits[0, :-1].float()
            m = mask[1:]
            s = torch.nn.functional.cross_entropy(logits[m], ids[1:][m], reduction="sum")
            (s / count).backward()
            total += s.item()
        losses.append(total / count)
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        sched.step()
    state = {k.replace(".default", ""): v.detach().clone() for k, v in pm.named_parameters() if v.requires_grad}
    return losses, state


def write_prequantized(src, out, dtype=None):
    """The folder as transformers + bitsandbytes save it in 4-bit (CPU), loaded in dtype (fp32 by default)."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = dtype or torch.float32
    cfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=dtype)
    m = AutoModelForCausalLM.from_pretrained(src, quantization_config=cfg, device_map="cpu", dtype=dtype)
    m.save_pretrained(out)
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(f"{src}/{f}", f"{out}/{f}")


def bad_configs(d):
    """(c): folders that differ from the pre-quantized one only in quantization_config."""
    base = json.load(open(f"{d}/q4/config.json"))
    cases = {
        "fp4": ({"bnb_4bit_quant_type": "fp4"}, "quantization_config.bnb_4bit_quant_type"),
        "8bit": ({"load_in_8bit": True, "_load_in_8bit": True, "load_in_4bit": False, "_load_in_4bit": False},
                 "quantization_config.load_in_8bit"),
        "gptq": ({"quant_method": "gptq"}, "quantization_config.quant_method"),
        "awq": ({"quant_method": "awq"}, "quantization_config.quant_method"),
        "no_double_quant": ({"bnb_4bit_use_double_quant": False}, "quantization_config.bnb_4bit_use_double_quant"),
        "skip_decoder": ({"llm_int8_skip_modules": ["lm_head", "model.layers.0.mlp"]},
                         "quantization_config.llm_int8_skip_modules"),
    }
    for name, (change, key) in cases.items():
        out = f"{d}/bad_{name}"
        os.makedirs(out)
        for f in os.listdir(f"{d}/q4"):
            if f != "config.json":
                os.symlink(f"{d}/q4/{f}", f"{out}/{f}")
        cfg = json.loads(json.dumps(base))
        cfg["quantization_config"].update(change)
        json.dump(cfg, open(f"{out}/config.json", "w"), indent=2)
        r = hsloth("eval", "--model", out, "--data", f"{d}/shards/eval", "--device", "cpu", "--json", check_rc=False)
        last = r.stderr.strip()
        check(r.returncode == 1 and key in last and "supported" in last,
              f"quantization_config {name}: error names {key} and what is supported ({last.splitlines()[-2:] if last else ''})")
    r = hsloth(*train_args(d, "q4", "FULL", finetune="full"), check_rc=False)
    check(r.returncode == 1 and "finetune = full" in r.stderr and "NF4" in r.stderr,
          "finetune = full on a pre-quantized base is an error")


def main():
    if not BIN or not os.path.exists(BIN):
        print("hsloth binary not found; skipping")
        return 77
    try:
        import h5py  # noqa: F401
        import peft  # noqa: F401
        import torch
        import transformers  # noqa: F401
        from safetensors.torch import load_file
    except ImportError as e:
        print(f"oracle missing ({e}); skipping")
        return 77
    try:
        import bitsandbytes.functional  # noqa: F401
    except Exception as e:  # ImportError, or a backend that fails to load
        print(f"bitsandbytes not importable ({e}): no NF4 oracle; skipping "
              "(pip install -r launch/requirements-test.txt)")
        return 77
    import hf_models

    d = tempfile.mkdtemp(prefix="hs-qlora-")
    try:
        hf_models.make_with_demo_data(d, {"model": {"intermediate_size": 128}}, train=24, evals=8)
        for split in ["train", "eval"]:
            hsloth("prep", "--input", f"{d}/demo/{split}.jsonl", "--tokenizer", f"{d}/model", "--out",
                   f"{d}/shards/{split}", "--loss", "response", "--template", "chatml")
        write_prequantized(f"{d}/model", f"{d}/q4")
        qc = json.load(open(f"{d}/q4/config.json")).get("quantization_config", {})
        check(qc.get("bnb_4bit_quant_type") == "nf4", "transformers wrote a pre-quantized NF4 folder")

        # (a) eval
        oracle = oracle_model(f"{d}/model")
        evals = read_samples(f"{d}/shards/eval")
        ref = loss_of(oracle, evals)
        common = ["--data", f"{d}/shards/eval", "--device", "cpu", "--dtype", "float32", "--json"]
        ours = json.loads(hsloth("eval", "--model", f"{d}/model", "--quant", "nf4", *common).stdout)["loss"]
        check(abs(ours - ref) <= 1e-5 * abs(ref),
              f"eval --quant nf4 == transformers on dequantized NF4 weights ({ours:.7f} vs {ref:.7f})")
        r = hsloth("eval", "--model", f"{d}/q4", *common)
        pre = json.loads(r.stdout)["loss"]
        check(abs(pre - ref) <= 1e-5 * abs(ref) and "pre-quantized" in r.stderr,
              f"eval of transformers' pre-quantized folder (no --quant) == oracle ({pre:.7f} vs {ref:.7f})")
        check("not used" not in r.stderr, "every tensor of the pre-quantized folder is read (no unused-tensor warning)")
        # the usual -bnb-4bit checkpoint: quantized from bf16 (quant_state dtype bf16), evaluated in fp32
        write_prequantized(f"{d}/model", f"{d}/q4bf16", torch.bfloat16)
        ref16 = loss_of(oracle_model(f"{d}/model", torch.bfloat16), evals)
        pre16 = json.loads(hsloth("eval", "--model", f"{d}/q4bf16", *common).stdout)["loss"]
        check(abs(pre16 - ref16) <= 1e-5 * abs(ref16),
              f"eval of a pre-quantized folder made from bf16 weights == oracle ({pre16:.7f} vs {ref16:.7f})")
        dense = json.loads(hsloth("eval", "--model", f"{d}/model", *common).stdout)["loss"]
        check(abs(dense - ref) > 1e-4 * abs(ref), f"without --quant the loss differs ({dense:.6f} vs {ref:.6f})")
        from tokenizers import Tokenizer
        prompt = "the quick brown fox"
        ids = Tokenizer.from_file(f"{d}/model/tokenizer.json").encode(prompt, add_special_tokens=True).ids
        hf_ids = oracle.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=10, do_sample=False, eos_token_id=None,
                                 pad_token_id=0)[0, len(ids):].tolist()
        r = hsloth("generate", "--model", f"{d}/model", "--quant", "nf4", "--prompt", prompt, "--greedy",
                   "--max-new", 10, "--ids", "--device", "cpu", "--dtype", "float32")
        ours_ids = [int(x) for x in r.stdout.split()]
        check(len(ours_ids) >= 1 and ours_ids == hf_ids[:len(ours_ids)],
              f"generate --quant nf4 --greedy == transformers' greedy generate on the oracle ({ours_ids} vs {hf_ids})")

        # (b) train
        hsloth(*train_args(d, "model", "A"))
        mets = [json.loads(x) for x in open(f"{d}/A/metrics.jsonl")]
        ours_l = [m["loss"] for m in mets if "loss" in m]
        ref_l, ref_state = hf_replay(d, read_samples(f"{d}/shards/train"))
        worst = max(abs(a - b) / abs(b) for a, b in zip(ours_l, ref_l)) if ours_l else 1
        check(len(ours_l) == STEPS and worst <= 1e-4,
              f"QLoRA per-step loss vs HF+PEFT on the dequantized weights: worst relative diff {worst:.2e} "
              f"({len(ours_l)} steps; first {ours_l[0]:.5f}/{ref_l[0]:.5f}, last {ours_l[-1]:.5f}/{ref_l[-1]:.5f})")
        adapter = load_file(f"{d}/A/final/adapter_model.safetensors")
        check(sorted(adapter) == sorted(ref_state), f"final adapter has PEFT's {len(ref_state)} tensor names")
        rel = max(((adapter[k] - v).norm() / v.norm()).item() for k, v in ref_state.items())
        check(rel <= 1e-3, f"final adapter vs HF+PEFT: worst relative error {rel:.2e}")
        a_bytes = open(f"{d}/A/final/adapter_model.safetensors", "rb").read()
        hsloth(*train_args(d, "q4", "B"))
        check(open(f"{d}/B/final/adapter_model.safetensors", "rb").read() == a_bytes,
              "QLoRA on transformers' pre-quantized folder: bit-identical adapter")
        hsloth(*train_args(d, "model", "GC", **{"train.grad_ckpt": "on"}))
        check(open(f"{d}/GC/final/adapter_model.safetensors", "rb").read() == a_bytes,
              "train.grad_ckpt = on: bit-identical adapter")
        env = dict(os.environ, HSLOTH_FAIL_AT="0:4:data")
        r = hsloth(*train_args(d, "model", "C", **{"ckpt.every": 2}), check_rc=False, env=env)
        check(r.returncode != 0 and os.path.isdir(f"{d}/C/checkpoints"), "a run failing in step 4 leaves checkpoints")
        r = hsloth(*train_args(d, "model", "C", **{"ckpt.every": 2, "train.resume": "auto"}))
        check("resumed from" in r.stderr and
              open(f"{d}/C/final/adapter_model.safetensors", "rb").read() == a_bytes,
              "failed + resumed QLoRA run: bit-identical adapter")
        mpi = shutil.which("mpiexec")
        if mpi:
            env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                       OMPI_MCA_rmaps_base_oversubscribe="1", OMP_NUM_THREADS="1")
            hsloth(*train_args(d, "model", "MPI"), env=env, prefix=(mpi, "-n", "2", "--oversubscribe"))
            mpi_l = [json.loads(x)["loss"] for x in open(f"{d}/MPI/metrics.jsonl") if "loss" in json.loads(x)]
            worst = max(abs(a - b) / abs(b) for a, b in zip(mpi_l, ref_l)) if mpi_l else 1
            check(len(mpi_l) == STEPS and worst <= 1e-4,
                  f"QLoRA under mpirun -np 2: per-step loss vs HF+PEFT worst relative diff {worst:.2e}")
        else:
            print("(mpiexec not found: the 2-rank QLoRA run is not checked)")
        ev = json.loads(hsloth("eval", "--model", f"{d}/model", "--quant", "nf4", "--adapter", f"{d}/A/final",
                               *common).stdout)["loss"]
        from peft import PeftModel
        ours_pm = PeftModel.from_pretrained(oracle_model(f"{d}/model"), f"{d}/A/final").eval()
        ev_ref = loss_of(ours_pm, evals)
        check(abs(ev - ev_ref) <= 1e-5 * abs(ev_ref),
              f"eval --quant nf4 --adapter == PEFT on the oracle ({ev:.7f} vs {ev_ref:.7f})")
        # The adapter on a real 4-bit base: transformers loads the pre-quantized folder (bitsandbytes' Linear4bit
        # on the CPU, fp32 compute) and PEFT loads our adapter onto it.
        from transformers import AutoModelForCausalLM
        q4m = AutoModelForCausalLM.from_pretrained(f"{d}/q4", device_map="cpu", dtype=torch.float32)
        check(type(q4m.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit",
              "transformers loads the pre-quantized folder with bitsandbytes' Linear4bit")
        for m in q4m.modules():  # bitsandbytes 0.50's AVX-512-bf16 inference repacking asserts out % 32 == 0
            if hasattr(m, "support_avx512bf16_for_cpu"):
                m.support_avx512bf16_for_cpu = False
        ev4 = loss_of(PeftModel.from_pretrained(q4m, f"{d}/A/final").eval(), evals)
        check(abs(ev - ev4) <= 1e-4 * abs(ev4),
              f"PEFT on the load_in_4bit base with our adapter: eval loss {ev4:.7f} vs hsloth's {ev:.7f}")

        # (c) errors
        bad_configs(d)

        # (d) merge
        r = hsloth("merge", "--model", f"{d}/q4", "--adapter", f"{d}/A/final", "--out", f"{d}/merged")
        check("dequantizing" in r.stderr, "merge from a 4-bit base says it dequantizes first")
        cfg = json.load(open(f"{d}/merged/config.json"))
        check("quantization_config" not in cfg, "the merged folder's config.json has no quantization_config")
        merged = hf_models.load(f"{d}/merged")
        x = torch.randint(0, 512, (2, 16), generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            lm, lp = merged(x).logits, ours_pm(x).logits
        e = ((lm - lp).norm() / lp.norm()).item()
        check(e <= 1e-5, f"merged folder (transformers) == PEFT on the dequantized base: rel err {e:.2e}")
        hsloth("merge", "--model", f"{d}/q4bf16", "--adapter", f"{d}/A/final", "--out", f"{d}/merged16")
        cfg16 = json.load(open(f"{d}/merged16/config.json"))
        t16 = load_file(f"{d}/merged16/model.safetensors")
        check({v.dtype for v in t16.values()} == {torch.bfloat16} and "quantization_config" not in cfg16 and
              cfg16.get("dtype", cfg16.get("torch_dtype")) == "bfloat16",
              "merge from a bf16-made 4-bit base writes a bf16 folder without quantization_config")
        pm16 = PeftModel.from_pretrained(oracle_model(f"{d}/model", torch.bfloat16), f"{d}/A/final").eval()
        with torch.no_grad():
            l16, lp16 = hf_models.load(f"{d}/merged16")(x).logits, pm16(x).logits
        e16 = ((l16 - lp16).norm() / lp16.norm()).item()
        check(e16 <= 1e-2, f"its logits (transformers) == PEFT on the dequantized bf16 base at bf16 precision: {e16:.2e}")
        hsloth("merge", "--model", f"{d}/model", "--adapter", f"{d}/A/final", "--out", f"{d}/merged2", "--quant", "nf4")
        t1 = load_file(f"{d}/merged/model.safetensors")
        t2 = load_file(f"{d}/merged2/model.safetensors")
        same = sorted(t1) == sorted(t2) and all(torch.equal(t1[k], t2[k]) for k in t1)
        check(same, "merge --quant nf4 from the fp32 folder == merge from the pre-quantized folder")
    finally:
        if not failures:
            shutil.rmtree(d, ignore_errors=True)
        else:
            print(f"work folder kept: {d}")
    print(f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
