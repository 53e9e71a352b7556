"""Builds the embedded demo: a synthetic instruction task with exact-match answers, and a small byte-level
BPE tokenizer trained on it (HF `tokenizers`), written as the files users bring: messages JSONL for
`hsloth prep`, and tokenizer.json + tokenizer_config.json for the model folder, whose chat template is
Qwen2.5's ChatML (default system message included), so `hsloth prep --template chatml` renders it exactly.

The task has a skill a tiny model can learn in minutes and that is measured exactly: the answer to each
prompt is a deterministic function of it (add two numbers, reverse a word, sort three letters, ...).

  python launch/demo/make_demo.py OUT_DIR [--train 4000] [--eval 200] [--seed 1234]
"""
import argparse
import json
import os
import random

WORDS = ("apple river stone cloud tiger piano lemon candle forest rocket silver garden window marble "
         "orange dragon castle planet butter mirror pencil socket violet wizard yellow zebra").split()
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def make_example(rng):
    kind = rng.randrange(4)
    if kind == 0:
        a, b = rng.randrange(100), rng.randrange(100)
        return f"What is {a} plus {b}?", str(a + b)
    if kind == 1:
        w = rng.choice(WORDS)
        return f"Reverse the word {w}.", w[::-1]
    if kind == 2:
        letters = rng.sample("abcdefghijklmnopqrstuvwxyz", 3)
        return f"Sort the letters {' '.join(letters)}.", " ".join(sorted(letters))
    w = rng.choice(WORDS)
    return f"How many letters are in {w}?", str(len(w))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--eval", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--vocab", type=int, default=512)
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
            splits[split].append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
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
    print(f"demo data: {len(splits['train'])} train / {len(splits['eval'])} eval conversations, "
          f"tokenizer with {tok.get_vocab_size()} tokens -> {args.out}")


if __name__ == "__main__":
    main()
