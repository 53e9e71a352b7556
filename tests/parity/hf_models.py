"""Small random-init Hugging Face model folders, written by transformers itself, for parity tests.

One entry per architecture feature the C++ decoder implements: llama with llama3 rope scaling and tied
embeddings, TinyLlama-like GQA, llama with attention/MLP biases and linear rope (config.json in the legacy
rope_theta/rope_scaling layout), mistral, qwen2 (q/k/v bias), qwen3 (q/k norm, explicit head_dim != hidden /
heads). Weights are drawn well away from transformers' tiny default init (norm weights around 1, biases
non-zero) so that a wrong op cannot hide behind near-zero activations.

    make(arch, out_dir, seed=0, vocab_size=None, dtype=torch.float32) -> out_dir
    make_with_demo_data(d, models, train=64, evals=8): the demo's data and tokenizer, and tinyllama models
    ARCHS: the names
"""

import json
import os

import torch

SMALL = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, vocab_size=128, max_position_embeddings=512)

ARCHS = {
    "llama3_tied": dict(
        model_type="llama", num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True, rms_norm_eps=1e-5,
        rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                             high_freq_factor=4.0, original_max_position_embeddings=64)),
    "tinyllama": dict(model_type="llama", num_attention_heads=8, num_key_value_heads=2, rms_norm_eps=1e-5),
    "llama_bias_linear": dict(
        model_type="llama", num_attention_heads=4, num_key_value_heads=4, attention_bias=True, mlp_bias=True,
        rope_parameters=dict(rope_type="linear", rope_theta=10000.0, factor=2.0), legacy_rope=True),
    "mistral": dict(model_type="mistral", num_attention_heads=4, num_key_value_heads=1, sliding_window=256),
    "qwen2": dict(model_type="qwen2", num_attention_heads=4, num_key_value_heads=2,
                  rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
    "qwen3": dict(model_type="qwen3", num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                  tie_word_embeddings=True),
}


def config_for(arch, vocab_size=None, **overrides):
    from transformers import AutoConfig

    spec = dict(SMALL)
    spec.update(ARCHS[arch])
    spec.update(overrides)
    if vocab_size is not None:
        spec["vocab_size"] = vocab_size
    spec.pop("legacy_rope", None)
    model_type = spec.pop("model_type")
    return AutoConfig.for_model(model_type, **spec)


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if "norm" in name:
                p.copy_(1.0 + 0.2 * noise)
            elif "embed_tokens" in name:
                p.copy_(0.5 * noise)
            else:
                p.copy_(noise / (p.shape[-1] ** 0.5) * (1.0 if p.dim() > 1 else 0.3))


def make(arch, out_dir, seed=0, vocab_size=None, dtype=torch.float32, **overrides):
    from transformers import AutoModelForCausalLM

    config = config_for(arch, vocab_size, **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    randomize(model, seed)
    model = model.to(dtype)
    model.save_pretrained(out_dir, safe_serialization=True)
    if ARCHS[arch].get("legacy_rope"):
        # Rewrite config.json in the pre-transformers-5 layout (rope_theta + rope_scaling {type: ...}).
        path = os.path.join(out_dir, "config.json")
        with open(path) as f:
            cfg = json.load(f)
        rp = cfg.pop("rope_parameters")
        cfg["rope_theta"] = rp.pop("rope_theta")
        rp["type"] = rp.pop("rope_type")
        cfg["rope_scaling"] = rp
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2)
    return out_dir


def load(out_dir, dtype=torch.float32, attn="eager", device="cpu"):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=dtype, attn_implementation=attn)
    return model.to(device).eval()


def make_with_demo_data(d, models, train=64, evals=8):
    """The demo's chat data (launch/demo/make_demo.py, vocabulary 512) in d/demo, and one random tinyllama
    per entry of `models` ({folder name: config overrides}) in d/<name>, each with the demo's tokenizer."""
    import shutil
    import subprocess
    import sys

    src = os.environ.get("HSLOTH_SOURCE",
                         os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    subprocess.run([sys.executable, f"{src}/launch/demo/make_demo.py", f"{d}/demo", "--train", str(train), "--eval",
                    str(evals), "--vocab", "512"], check=True, capture_output=True)
    for name, over in models.items():
        make("tinyllama", f"{d}/{name}", seed=1, vocab_size=512, **over)
        for f in ["tokenizer.json", "tokenizer_config.json"]:
            shutil.copy(f"{d}/demo/model/{f}", f"{d}/{name}/{f}")
