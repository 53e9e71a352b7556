#!/usr/bin/env python3
"""`hsloth tokenize` against HF `tokenizers` on a generated corpus, for every shared tokenizer and for
variants of them that exercise the other layouts the loader supports.

The corpus (fixed seed) mixes scripts (CJK, kana, Hangul syllables and conjoining jamo, Arabic with
harakat, Hebrew points, Devanagari, Thai, Cyrillic, Greek), emoji with ZWJ sequences, skin tones, flags
and keycaps, combining marks in NFC, NFD and shuffled orders, code, long digit runs in several scripts,
whitespace runs (tabs, CRLF, many spaces, Unicode spaces), contractions in mixed case, the tokenizer's
own added/special tokens embedded in text, random bytes repaired to UTF-8, random code points and long
texts. For each tokenizer file it compares, item by item:
  * ids with add_special_tokens False and True (HF Tokenizer.encode),
  * byte offsets (HF's character offsets converted to bytes; ours may be narrower only for a token that
    is part of one character, where ours are the exact bytes),
  * decode(ids) with HF's decode, and decode(encode(x)) == x (NFC(x) under an NFC normalizer) for texts
    without added-token text on the shared tokenizers.
Variants (written to a temp folder, loaded by both sides): the Llama-3 split regex with ignore_merges
and a BOS template, GPT-2 style ByteLevel(add_prefix_space, use_regex, trim_offsets) with lstrip/rstrip/
single_word/normalized added tokens, Metaspace pre-tokenizers (prepend_scheme first without split, and
the legacy add_prefix_space layout) with Metaspace decoders, <unk> without byte fallback (fuse_unk on and
off), normalized special tokens, and every Split behaviour (with invert), Digits, NFD, regex Replace,
Strip and Prepend normalizers.

The shared llama2 tokenizer.json writes merges of tokens with spaces in the legacy "a b" form, which HF
tokenizers refuses to load; HF gets a copy with those merges written as pairs (the one split whose halves
and concatenation are in the vocabulary), hsloth reads the original.

Exit 0: all equal; 1: mismatches (each reported with the input and both id lists); 77: skipped (no
`tokenizers` package, no shared data or no hsloth binary).
"""
import bisect
import copy
import json
import os
import random
import subprocess
import sys
import tempfile
import unicodedata

try:
    from tokenizers import Tokenizer
except ImportError:
    print("SKIP: the tokenizers package is not installed")
    sys.exit(77)

BIN = os.environ.get("HSLOTH_BIN", "")
DATA = os.environ.get("HSLOTH_TESTDATA", "")
if not BIN or not os.access(BIN, os.X_OK):
    print(f"SKIP: hsloth binary not found (HSLOTH_BIN={BIN!r})")
    sys.exit(77)
if not DATA or not os.path.isdir(os.path.join(DATA, "tokenizers")):
    print(f"SKIP: shared data not found (HSLOTH_TESTDATA={DATA!r})")
    sys.exit(77)

SEP = "\n__hsloth_item_7f3a__\n"
SEED = 20240611
MAX_REPORT = 8


# ---------------------------------------------------------------------------------------------------
# corpus

def crange(a, b):
    return [chr(c) for c in range(a, b + 1)]


LATIN = crange(0x61, 0x7A) + crange(0x41, 0x5A)
ACCENTED = list("éèêëàâäôöûüçñÉÈÀÇßøåæœŁłđĐăơưẠạẾếệỆ")
CJK = crange(0x4E00, 0x9FA5)
KANA = crange(0x3041, 0x3096) + crange(0x30A1, 0x30FA)
HANGUL = crange(0xAC00, 0xD7A3)
JAMO_L, JAMO_V, JAMO_T = crange(0x1100, 0x1112), crange(0x1161, 0x1175), crange(0x11A8, 0x11C2)
ARABIC, HARAKAT = crange(0x0621, 0x064A), crange(0x064B, 0x0652)
HEBREW, HEBREW_POINTS = crange(0x05D0, 0x05EA), crange(0x05B0, 0x05BC)
DEVA, MATRAS = crange(0x0915, 0x0939), crange(0x093E, 0x094C) + ["\u094d", "\u093c", "\u0902", "\u0901"]
THAI, THAI_MARKS = crange(0x0E01, 0x0E2E), ["\u0e31"] + crange(0x0E34, 0x0E3A) + crange(0x0E47, 0x0E4E)
CYRILLIC, GREEK = crange(0x0410, 0x044F), crange(0x0391, 0x03A9) + crange(0x03B1, 0x03C9)
COMBINING = crange(0x0300, 0x036F) + ["\u0483", "\u0591", "\u05c4", "\u0610", "\u1ab0", "\u1dc0", "\u20d0", "\ufe20"]
EMOJI = ["😀", "🤗", "🚀", "❤️", "👍🏽", "👩🏿‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸", "🇯🇵", "1️⃣", "#️⃣", "✍🏻", "🧑‍🤝‍🧑",
         "🫠", "☺️", "🙂‍↔️", "🐈‍⬛", "👁️‍🗨️", "💯", "🔥", "©️", "™", "Ⓐ"]
PUNCT = list(".,;:!?'\"()[]{}<>-_/\\|@#$%^&*+=~`…–—“”‘’«»¿¡·•§¶†‡")
DIGITS = list("0123456789")
OTHER_DIGITS = crange(0x0660, 0x0669) + crange(0x0966, 0x096F) + crange(0xFF10, 0xFF19) + list("²³¹½⅓¾Ⅻ")
SPACES = [" ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", " \n", "\t\t", "\u00a0", "\u2000", "\u2003", "\u2009",
          "\u200a", "\u3000", "\u202f", "\u205f", "\u1680", "\u0085", "\u2028", "\u2029", "\u200b", "\x0b", "\x0c",
          "\x1c", "\x1f", "\ufeff"]
WORDS = ["the", "The", "THE", "tokenizer", "Hello", "world", "don't", "DON'T", "it's", "It'S", "you're", "we've",
         "I'm", "she'll", "he'd", "O'Neil", "'s", "'ll", "'ſ", "'K", "naïve", "Straße", "İstanbul", "ǅemal",
         "ﬁle", "ﬀ", "ǈ", "Ⅻ", "résumé", "coöperate", "x²", "H₂O", "e=mc²", "3.14159", "1,234,567", "0xDEADBEEF",
         "user@example.com", "https://huggingface.co/docs", "snake_case", "camelCase", "C++20", "--flag=1"]
CODE = [
    "def f(x):\n    return x ** 2  # square\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
    "if __name__ == \"__main__\":\n    main()\n",
    "#include <vector>\nstd::vector<int> v{1, 2, 3};\n",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;\n",
    "    \n        x = [i for i in range(10)]\r\n",
    "<div class=\"a\">\n  <span>text</span>\n</div>\n",
    "{\"key\": [1, 2.5, null, true], \"s\": \"\\u00e9\"}\n",
    "fn main() {\n    println!(\"{}\", 42);\n}\n",
    "$ ls -la | grep '^d' > out.txt 2>&1\n",
]


def word(rng, pool, lo=1, hi=8):
    return "".join(rng.choice(pool) for _ in range(rng.randint(lo, hi)))


def script_word(rng):
    kind = rng.randrange(14)
    if kind == 0:
        return word(rng, LATIN)
    if kind == 1:
        return word(rng, LATIN + ACCENTED)
    if kind == 2:
        return word(rng, CJK, 1, 6)
    if kind == 3:
        return word(rng, KANA, 1, 6)
    if kind == 4:
        return word(rng, HANGUL, 1, 4)
    if kind == 5:  # conjoining jamo, composed by NFC
        return "".join(rng.choice(JAMO_L) + rng.choice(JAMO_V) + (rng.choice(JAMO_T) if rng.random() < 0.5 else "")
                       for _ in range(rng.randint(1, 3)))
    if kind == 6:
        return "".join(rng.choice(ARABIC) + (rng.choice(HARAKAT) if rng.random() < 0.4 else "")
                       for _ in range(rng.randint(2, 7)))
    if kind == 7:
        return "".join(rng.choice(HEBREW) + (rng.choice(HEBREW_POINTS) if rng.random() < 0.4 else "")
                       for _ in range(rng.randint(2, 6)))
    if kind == 8:
        return "".join(rng.choice(DEVA) + (rng.choice(MATRAS) if rng.random() < 0.6 else "")
                       for _ in range(rng.randint(1, 5)))
    if kind == 9:
        return "".join(rng.choice(THAI) + (rng.choice(THAI_MARKS) if rng.random() < 0.4 else "")
                       for _ in range(rng.randint(2, 8)))
    if kind == 10:
        return word(rng, CYRILLIC + GREEK)
    if kind == 11:
        return rng.choice(EMOJI) * rng.randint(1, 2)
    if kind == 12:
        return rng.choice(WORDS)
    return word(rng, LATIN, 1, 3) + "".join(rng.choice(COMBINING) for _ in range(rng.randint(1, 3)))


def sentence(rng, n=None):
    parts = []
    for _ in range(n or rng.randint(1, 14)):
        r = rng.random()
        if r < 0.6:
            parts.append(script_word(rng))
        elif r < 0.75:
            parts.append(rng.choice(PUNCT) * rng.randint(1, 3))
        elif r < 0.85:
            parts.append(word(rng, DIGITS, 1, 12))
        else:
            parts.append(rng.choice(SPACES))
        parts.append(rng.choice([" ", " ", " ", "", "  ", "\n", "\t"]))
    return "".join(parts)


def normalization_variant(rng, text):
    form = rng.choice(["NFD", "NFC", "NFKD", "shuffle"])
    if form != "shuffle":
        return unicodedata.normalize(form, text)
    out = []
    for ch in unicodedata.normalize("NFD", text):  # shuffle each run of combining marks
        if out and unicodedata.combining(ch) and rng.random() < 0.7:
            out.insert(len(out) - rng.randint(0, 1) if unicodedata.combining(out[-1]) else len(out), ch)
        else:
            out.append(ch)
    return "".join(out)


def corpus(added_contents):
    rng = random.Random(SEED)
    texts = ["", " ", "  ", "\n", "\n\n\n", "\t", "a", "Hello world", " Hello world", "Hello  world  ",
             "I'm here, aren't you? 'S 's 'LL 'Ll'", "1234567890123456789", "١٢٣٤٥٦٧٨٩٠", "   leading",
             "trailing   ", "\r\n\r\n", "🤗", "👨‍👩‍👧‍👦", "e\u0301", "\u1100\u1161\u11a8", "a\u0316\u0301", "a\u0301\u0316",
             "\u0b47\u0b3e", "\U00011935\U00011930", "ſ 'ſ", "\u00a0x\u00a0", "x" * 300, " " * 300, "9" * 100]
    for _ in range(500):
        texts.append(sentence(rng))
    for _ in range(150):
        texts.append(normalization_variant(rng, sentence(rng)))
    for _ in range(80):
        texts.append("".join(rng.choice(CODE) for _ in range(rng.randint(1, 4))))
    for _ in range(80):
        pool = rng.choice([DIGITS, DIGITS + [",", ".", " "], OTHER_DIGITS, DIGITS + OTHER_DIGITS])
        texts.append(word(rng, pool, 1, 60) + rng.choice(["", " ", "x", "\n"]) + word(rng, DIGITS, 0, 7))
    for _ in range(100):
        texts.append("".join(rng.choice(SPACES) * rng.randint(1, 5) + rng.choice(["", "x", "word", "1", "。"])
                             for _ in range(rng.randint(1, 8))))
    for _ in range(120):  # the tokenizer's own added tokens, in text
        parts = []
        for _ in range(rng.randint(1, 6)):
            parts.append(rng.choice(added_contents) if rng.random() < 0.5 else script_word(rng))
            parts.append(rng.choice(["", " ", "  ", "\n", "\t", " \n "]))
        texts.append("".join(parts))
    for _ in range(100):  # random bytes, repaired as Python does
        raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 80)))
        texts.append(raw.decode("utf-8", errors="replace"))
    for _ in range(100):  # random code points (no surrogates), assigned or not
        texts.append("".join(chr(rng.choice([rng.randint(0, 0x7F), rng.randint(0x80, 0xFFFF), rng.randint(0x10000, 0x10FFFF)]))
                             for _ in range(rng.randint(1, 20))).replace("\ud800", ""))
    for _ in range(12):  # long texts
        texts.append("\n".join(sentence(rng, 30) for _ in range(rng.randint(20, 60))))
    texts = ["".join(ch for ch in t if not 0xD800 <= ord(ch) <= 0xDFFF) for t in texts]
    assert not any(SEP in t for t in texts)
    return texts


# ---------------------------------------------------------------------------------------------------
# tokenizer files and variants

def repaired_for_hf(doc):
    """Legacy merges whose tokens contain spaces, rewritten as pairs (HF refuses them as strings)."""
    model = doc["model"]
    vocab = model["vocab"]
    merges = []
    for m in model["merges"]:
        if isinstance(m, str) and m.count(" ") > 1:
            splits = [(m[:i], m[i + 1:]) for i, c in enumerate(m) if c == " "]
            good = [(a, b) for a, b in splits if a in vocab and b in vocab and a + b in vocab]
            assert len(good) == 1, m
            merges.append(list(good[0]))
        elif isinstance(m, str):
            merges.append(m.split(" "))
        else:
            merges.append(m)
    doc = copy.deepcopy(doc)
    doc["model"]["merges"] = merges
    return doc


def variants(tmp):
    """(name, path for hsloth, path for HF, round_trip, compare_offsets) for every tokenizer to compare."""
    out = []
    base = os.path.join(DATA, "tokenizers")
    for name in ["qwen2.5", "qwen3", "llama2", "tinyllama"]:
        path = os.path.join(base, name, "tokenizer.json")
        hf_path = path
        try:
            Tokenizer.from_file(path)
        except Exception as e:  # noqa: BLE001 - HF's own refusal, repaired below
            doc = repaired_for_hf(json.load(open(path, encoding="utf-8")))
            hf_path = os.path.join(tmp, f"{name}-for-hf.json")
            json.dump(doc, open(hf_path, "w", encoding="utf-8"), ensure_ascii=False)
            print(f"note: HF tokenizers cannot load {name}/tokenizer.json ({str(e).splitlines()[0]}); "
                  f"HF reads a copy with pair merges")
        out.append((name, path, hf_path, True, True))

    def write(name, doc, offsets=True):
        p = os.path.join(tmp, name + ".json")
        json.dump(doc, open(p, "w", encoding="utf-8"), ensure_ascii=False)
        out.append((name, p, p, False, offsets))

    qwen = json.load(open(os.path.join(base, "qwen2.5", "tokenizer.json"), encoding="utf-8"))
    llama3 = copy.deepcopy(qwen)
    llama3["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = (
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
        "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
    llama3["model"]["ignore_merges"] = True
    llama3["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        {"type": "TemplateProcessing",
         "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [151643], "tokens": ["<|endoftext|>"]}}}]}
    write("qwen-llama3-layout", llama3)

    gpt2 = copy.deepcopy(qwen)
    gpt2["normalizer"] = None
    gpt2["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    gpt2["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    flags = {"<|im_start|>": {"lstrip": True}, "<|im_end|>": {"rstrip": True}, "<tool_call>": {"single_word": True},
             "<|fim_prefix|>": {"normalized": True}, "</tool_call>": {"lstrip": True, "rstrip": True}}
    for t in gpt2["added_tokens"]:
        t.update(flags.get(t["content"], {}))
    write("qwen-gpt2-layout-flags", gpt2)

    def byte_level_last(steps):
        return {"type": "Sequence", "pretokenizers": steps + [
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}

    behaviors = copy.deepcopy(qwen)  # the other split behaviours, Digits and more normalizers
    behaviors["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "NFD"}, {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
        {"type": "Strip", "strip_left": True, "strip_right": False}, {"type": "Prepend", "prepend": "«"}]}
    behaviors["pre_tokenizer"] = byte_level_last([
        {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[.,!?]+"}, "behavior": "MergedWithNext", "invert": False},
        {"type": "Split", "pattern": {"Regex": "\\t"}, "behavior": "Removed", "invert": False},
        {"type": "Digits", "individual_digits": True}])
    # Offsets are not compared here: NFD reorders marks and Replace(" {2,}") merges spaces, and HF then
    # keeps one input character's range where ours cover all the input the bytes came from.
    write("qwen-split-behaviors", behaviors, offsets=False)

    inverted = copy.deepcopy(qwen)
    inverted["pre_tokenizer"] = byte_level_last([
        {"type": "Split", "pattern": {"Regex": "\\p{L}+"}, "behavior": "Isolated", "invert": True},
        {"type": "Split", "pattern": {"Regex": "\\s"}, "behavior": "Contiguous", "invert": False},
        {"type": "Split", "pattern": {"Regex": "\\p{P}"}, "behavior": "Removed", "invert": True},
        {"type": "Digits", "individual_digits": False}])
    write("qwen-split-inverted", inverted)

    tiny = json.load(open(os.path.join(base, "tinyllama", "tokenizer.json"), encoding="utf-8"))
    first = copy.deepcopy(tiny)
    first["normalizer"] = None
    first["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
    first["decoder"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
    write("tinyllama-metaspace-first", first)

    legacy = copy.deepcopy(tiny)
    legacy["normalizer"] = None
    legacy["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "add_prefix_space": True}
    legacy["decoder"] = {"type": "Metaspace", "replacement": "▁", "add_prefix_space": True}
    legacy["post_processor"] = {"type": "TemplateProcessing",
                                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                           {"Sequence": {"id": "A", "type_id": 0}},
                                           {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                                "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                                "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]},
                                                   "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}}
    write("tinyllama-metaspace-legacy", legacy)

    for fuse in (True, False):  # unknown characters without byte fallback: <unk>, fused or not
        unk = copy.deepcopy(tiny)
        unk["model"]["byte_fallback"] = False
        unk["model"]["fuse_unk"] = fuse
        unk["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
        write("tinyllama-unk-" + ("fused" if fuse else "unfused"), unk)

    normed = copy.deepcopy(tiny)
    for t in normed["added_tokens"]:
        t["normalized"] = True
    normed["added_tokens"].append({"id": 32000, "content": "<extra>", "single_word": False, "lstrip": True,
                                   "rstrip": True, "normalized": False, "special": False})
    normed["added_tokens"].append({"id": 32001, "content": "wörd", "single_word": True, "lstrip": False,
                                   "rstrip": False, "normalized": True, "special": False})
    write("tinyllama-normalized-added", normed)
    return out


# ---------------------------------------------------------------------------------------------------
# running and comparing

def run_hsloth(args, stdin_file):
    r = subprocess.run([BIN, "tokenize"] + args + ["--file", stdin_file, "--split", SEP.replace("\n", "\\n")],
                       capture_output=True)
    if r.returncode != 0:
        print(f"FAIL: hsloth tokenize {' '.join(args)} exited {r.returncode}:\n{r.stderr.decode(errors='replace')}")
        sys.exit(1)
    return r.stdout


def parse_encodings(out, n):
    lines = out.decode("utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == n + 1, (len(lines), n)
    result = []
    for line in lines[:-1]:
        ids, offs = [], []
        for tok in line.split():
            i, o = tok.split("@")
            b, e = o.split(":")
            ids.append(int(i))
            offs.append((int(b), int(e)))
        result.append((ids, offs))
    return result


def byte_offsets(text, offsets):
    pos = [0]
    for ch in text:
        pos.append(pos[-1] + len(ch.encode("utf-8")))
    return [(pos[b], pos[e]) for b, e in offsets]


def main():
    failures = 0
    checked = 0
    with tempfile.TemporaryDirectory(prefix="hsloth-tok-parity-") as tmp:
        for name, path, hf_path, round_trip, compare_offsets in variants(tmp):
            hf = Tokenizer.from_file(hf_path)
            added = [t.content for t in hf.get_added_tokens_decoder().values()]
            texts = corpus(added)
            corpus_file = os.path.join(tmp, name + ".txt")
            with open(corpus_file, "w", encoding="utf-8", newline="") as f:
                f.write("".join(t + SEP for t in texts))
            normalizer = json.load(open(path, encoding="utf-8")).get("normalizer") or {}
            nfc = "NFC" in json.dumps(normalizer)
            reported = 0

            def report(msg):
                nonlocal reported, failures
                failures += 1
                if reported < MAX_REPORT:
                    print(f"MISMATCH [{name}] {msg}")
                reported += 1

            for special in (False, True):
                ours = parse_encodings(run_hsloth(["--tokenizer", path, "--offsets"] + (["--bos"] if special else []),
                                                  corpus_file), len(texts))
                for text, (ids, offs) in zip(texts, ours):
                    enc = hf.encode(text, add_special_tokens=special)
                    checked += 1
                    if ids != enc.ids:
                        first = next((i for i, (a, b) in enumerate(zip(ids, enc.ids)) if a != b), min(len(ids), len(enc.ids)))
                        report(f"add_special_tokens={special} input={text!r}\n  hf   ={enc.ids}\n  ours ={ids}\n"
                               f"  first difference at token {first}")
                        continue
                    if special or not compare_offsets:
                        continue
                    if nfc and hf.normalizer.normalize_str(text) != text:
                        # HF aligns a composed or reordered character with the first input character
                        # only; ours cover every input byte it came from. Not comparable here.
                        continue
                    hf_offs = byte_offsets(text, enc.offsets)
                    raw = text.encode("utf-8")
                    starts = sorted({b for b, _ in byte_offsets(text, [(i, i) for i in range(len(text) + 1)])})
                    start_set = set(starts)

                    def same(m, t):
                        # A boundary inside a character (a token with part of a character: ours are its
                        # exact bytes) may differ from HF's, which lands somewhere on that character.
                        if m == t:
                            return True
                        if m in start_set:
                            return False
                        k = bisect.bisect_left(starts, m)  # starts[k - 1] < m < starts[k]
                        return starts[k - 1] <= t <= starts[k]

                    for k, (mine, theirs) in enumerate(zip(offs, hf_offs)):
                        if not (same(mine[0], theirs[0]) and same(mine[1], theirs[1])):
                            report(f"offsets of token {k} (id {ids[k]}) input={text!r}\n  hf={theirs} ours={mine}")
                            break
                ids_file = os.path.join(tmp, name + ".ids")
                with open(ids_file, "w") as f:
                    f.write("".join(" ".join(map(str, ids)) + "\n" for ids, _ in ours))
                decoded = run_hsloth(["--tokenizer", path, "--decode"], ids_file).decode("utf-8").split(SEP)
                assert decoded[-1] == "" and len(decoded) == len(texts) + 1
                for text, (ids, _), mine in zip(texts, ours, decoded):
                    theirs = hf.decode(ids, skip_special_tokens=False)
                    if mine != theirs:
                        report(f"decode of {ids[:40]} (input {text!r})\n  hf  ={theirs!r}\n  ours={mine!r}")
                    elif round_trip and not special and not any(a in text for a in added):
                        want = hf.normalizer.normalize_str(text) if nfc else text
                        if mine != want:
                            report(f"decode(encode(x)) != x for x={text!r}: {mine!r}")
            print(f"{name}: {len(texts)} texts x 2 modes compared"
                  + (f", {reported} mismatches" if reported else ", all identical"))
    if failures:
        print(f"FAILED: {failures} mismatches")
        return 1
    print(f"PASSED: {checked} encodings identical to HF tokenizers {__import__('tokenizers').__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
