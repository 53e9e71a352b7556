"""Builds the embedded demo: a synthetic instruction task with exact-match answers, and a small byte-level
BPE tokenizer trained on it (HF `tokenizers`), written as the files users bring: messages JSONL for
`hsloth prep`, and tokenizer.json + tokenizer_config.json for the model folder, whose chat template is
Qwen2.5's ChatML (default system message included), so `hsloth prep --template chatml` renders it exactly.

The task has a skill a tiny model can learn in minutes and that is measured exactly: each prompt hides one
key (an animal, a country or an adjective) among 2-4 random filler words and asks for its fact (the
animal's sound, the country's capital, the adjective's opposite: 30 facts in all). Eval prompts never
appear in train, so exact-match on them measures the skill (find the key, recall its fact), not memorised
prompts.

  python launch/demo/make_demo.py OUT_DIR [--train 4000] [--eval 200] [--seed 1234] [--model]

With --model it also writes a tiny random Llama (2 layers, hidden 192, 6 query / 2 key-value heads, MLP 512,
0.9M parameters; config.json + model.safetensors, HF layout and init: normal(0, 0.02) weights, unit norms,
tied embeddings) into OUT_DIR/model with plain torch, so the demo needs neither transformers nor a download.
Trained from scratch with configs/demo.ini it goes from 0% to 100% exact-match on the held-out prompts in
about 100 steps (2 layers suffice for this task and take half the time per step of 4).
"""
import argparse
import array
import json
import os
import random
import sys

# Filler words, and three small tables of facts: the prompt hides one key among fillers; the answer is the
# key's fact.
WORDS = ("apple river stone cloud tiger piano lemon candle forest rocket silver garden window marble orange "
         "dragon castle planet butter mirror pencil socket violet wizard yellow zebra anchor basket cactus "
         "donkey engine falcon guitar hammer island jacket kettle ladder magnet needle").split()
TABLES = {
    "Sound of the animal in": {"cow": "moo", "dog": "woof", "cat": "meow", "duck": "quack", "sheep": "baa",
                               "lion": "roar", "owl": "hoot", "snake": "hiss", "bee": "buzz", "frog": "croak"},
    "Capital of the country in": {"france": "paris", "japan": "tokyo", "italy": "rome", "egypt": "cairo",
                                  "peru": "lima", "kenya": "nairobi", "spain": "madrid", "chile": "santiago",
                                  "india": "delhi", "norway": "oslo"},
    "Opposite of the adjective in": {"hot": "cold", "big": "small", "fast": "slow", "happy": "sad",
                                     "light": "dark", "early": "late", "full": "empty", "hard": "soft",
                                     "loud": "quiet", "rich": "poor"},
}

CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def make_example(rng):
    """One key (an animal, a country or an adjective) hidden at a random place among 2-4 filler words, and
    the question for its table; the answer is the key's fact. Each prompt (which fillers, in which order,
    where the key sits) is new, so answering held-out prompts needs the skill: find the key, recall its fact."""
    question = rng.choice(sorted(TABLES))
    key, answer = rng.choice(sorted(TABLES[question].items()))
    words = rng.sample(WORDS, rng.randrange(2, 5))
    words.insert(rng.randrange(len(words) + 1), key)
    return f"{question}: {' '.join(words)}", answer


def write_tiny_llama(folder, vocab, seed):
    import struct

    import torch

    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab, "hidden_size": 192,
           "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 2,
           "head_dim": 32, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 512,
           "tie_word_embeddings": True, "hidden_act": "silu", "bos_token_id": None, "eos_token_id": 2,
           "torch_dtype": "float32"}
    g = torch.Generator().manual_seed(seed)
    h, kv, hd, inter = cfg["hidden_size"], cfg["num_key_value_heads"], cfg["head_dim"], cfg["intermediate_size"]
    q = cfg["num_attention_heads"] * hd
    tensors = {"model.embed_tokens.weight": (vocab, h), "model.norm.weight": (h,)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        tensors.update({p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
                        p + "self_attn.q_proj.weight": (q, h), p + "self_attn.k_proj.weight": (kv * hd, h),
                        p + "self_attn.v_proj.weight": (kv * hd, h), p + "self_attn.o_proj.weight": (h, q),
                        p + "mlp.gate_proj.weight": (inter, h), p + "mlp.up_proj.weight": (inter, h),
                        p + "mlp.down_proj.weight": (h, inter)})
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        shape = tensors[name]
        t = torch.ones(shape) if name.endswith("norm.weight") else torch.randn(shape, generator=g) * 0.02
        # No numpy: setup.sh installs only torch, and torch's wheel does not depend on numpy.
        assert sys.byteorder == "little", "safetensors is little-endian"
        b = array.array("f", t.flatten().tolist()).tobytes()
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--eval", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--model", action="store_true", help="also write a tiny random Llama into OUT/model")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    seen = set()
    splits = {"train": [], "eval": []}
    for split, n in (("eval", args.eval), ("train", args.train)):
        while len(splits[split]) < n:
            q, a = make_example(rng)
            if split == "train" and q in seen:  # eval prompts never appear in train
                continue
            if split == "eval":
                if q in seen:
                    continue
                seen.add(q)
            # A short system message keeps the template's long default one out of every sample.
            splits[split].append({"messages": [{"role": "system", "content": "Answer."},
                                               {"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    for split, rows in splits.items():
        with open(os.path.join(args.out, f"{split}.jsonl"), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=args.vocab, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts = [m["content"] for r in splits["train"] for m in r["messages"]] + [
        "system user assistant You are Qwen, created by Alibaba Cloud. You are a helpful assistant."]
    tok.train_from_iterator(texts, trainer)
    model_dir = os.path.join(args.out, "model")
    os.makedirs(model_dir, exist_ok=True)
    tok.save(os.path.join(model_dir, "tokenizer.json"))
    with open(os.path.join(model_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                   "chat_template": CHATML, "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=2)
    if args.model:
        eos = tok.token_to_id("<|im_end|>")
        write_tiny_llama(model_dir, tok.get_vocab_size(), args.seed)
        cfg = json.load(open(os.path.join(model_dir, "config.json")))
        cfg["eos_token_id"] = eos
        json.dump(cfg, open(os.path.join(model_dir, "config.json"), "w"), indent=2)
    print(f"demo data: {len(splits['train'])} train / {len(splits['eval'])} eval conversations, "
          f"tokenizer with {tok.get_vocab_size()} tokens -> {args.out}")


if __name__ == "__main__":
    main()
