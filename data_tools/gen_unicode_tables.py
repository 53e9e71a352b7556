#!/usr/bin/env python3
"""Generates src/tokenizer/unicode_tables.cpp: the Unicode data the exact HF tokenizer needs.

HF `tokenizers` (0.2x, the Python wheel) takes its Unicode from two places, at two different versions,
and the tables here follow each one (both were checked code point by code point against
`tokenizers` 0.23.3, see --verify):

* Split regexes run on Oniguruma with Unicode 16.0: \\p{L} \\p{N} (general categories) and \\s
  (White_Space). Source: `unicodedata2` 16.0.0 (pip install unicodedata2==16.0.0). White_Space is
  str.isspace() less U+001C..U+001F (which are bidi separators, not White_Space).
* The NFC normalizer uses the `unicode-normalization-alignments` crate, whose tables are Unicode 9.0:
  characters added after 9.0 have no decomposition and combining class 0 there. Source: unicodedata2
  16.0.0 restricted to code points of Age <= 9.0 (canonical classes and decompositions are stable
  across versions); Age comes from Perl's Unicode::UCD (Unicode 14; later code points are > 9.0).
* \\w of added tokens' `single_word` (Rust `regex` crate): Alphabetic + M + Nd + Pc + Join_Control.
  Only what lies outside L, M, Nd, Nl, Pc is stored (Other_Alphabetic symbols, ZWNJ/ZWJ), from the
  `regex` module's \\p{Alphabetic} limited to code points assigned in 16.0.
* Simple case folding for (?i:...) literals: str.casefold() where it gives one code point.

Usage:
  .venv/bin/python data_tools/gen_unicode_tables.py            # rewrite src/tokenizer/unicode_tables.cpp
  .venv/bin/python data_tools/gen_unicode_tables.py --check    # exit 1 if the committed file is stale
  .venv/bin/python data_tools/gen_unicode_tables.py --verify   # compare the data with HF tokenizers
Exit 77 (skip) when unicodedata2 16.0.0 or Perl's Unicode::UCD is missing.
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "src", "tokenizer", "unicode_tables.cpp"))
WANT_UNICODE = "16.0.0"
NFC_AGE_MAX = 9.0

CATEGORIES = ["Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe",
              "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co"]


def skip(msg):
    print(f"SKIP: {msg}", file=sys.stderr)
    sys.exit(77)


def load_ucd():
    try:
        import unicodedata2 as ud
    except ImportError:
        skip("unicodedata2 is not installed (pip install unicodedata2==16.0.0)")
    if ud.unidata_version != WANT_UNICODE:
        skip(f"unicodedata2 gives Unicode {ud.unidata_version}; HF tokenizers' regexes use {WANT_UNICODE} "
             f"(pip install unicodedata2=={WANT_UNICODE})")
    return ud


def ages(cps):
    """Age (as a float, 99 for unassigned in Perl's UCD) of each code point, from Perl's Unicode::UCD."""
    try:
        out = subprocess.run(["perl", "-MUnicode::UCD=charprop", "-ne", 'chomp; print charprop($_, "Age"), "\\n"'],
                             input="\n".join(map(str, cps)), capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        skip(f"Perl's Unicode::UCD is needed for character ages: {e}")
    result = {}
    for cp, age in zip(cps, out.split()):
        result[cp] = 99.0 if age == "Unassigned" else float(age[1:].replace("_", "."))
    if len(result) != len(cps):
        skip("Perl's Unicode::UCD gave fewer ages than asked for")
    return result


def build(ud):
    import regex

    all_cps = range(0x110000)
    cat = [CATEGORIES.index(ud.category(chr(c))) for c in all_cps]
    runs = []
    for c in all_cps:
        if not runs or runs[-1][1] != cat[c]:
            runs.append((c, cat[c]))
    white = [c for c in all_cps if chr(c).isspace() and not 0x1C <= c <= 0x1F]

    base_word = {CATEGORIES.index(x) for x in ["Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "Pc"]}
    alpha = regex.compile(r"\p{Alphabetic}")
    word_extra = [c for c in all_cps
                  if cat[c] not in base_word and cat[c] != 0 and not 0xD800 <= c <= 0xDFFF
                  and (alpha.match(chr(c)) or c in (0x200C, 0x200D))]

    # Normalization data, restricted to what existed in Unicode 9.0.
    relevant = [c for c in all_cps if not 0xD800 <= c <= 0xDFFF and
                (ud.combining(chr(c)) or ud.decomposition(chr(c)) and not ud.decomposition(chr(c)).startswith("<"))]
    age = ages(relevant)
    old = {c for c in relevant if age[c] <= NFC_AGE_MAX}
    ccc = [(c, ud.combining(chr(c))) for c in relevant if c in old and ud.combining(chr(c))]
    decomp = {}
    for c in relevant:
        d = ud.decomposition(chr(c))
        if c in old and d and not d.startswith("<") and not 0xAC00 <= c <= 0xD7A3:
            decomp[c] = [int(x, 16) for x in d.split()]

    def full(c):
        if c not in decomp:
            return [c]
        return [y for x in decomp[c] for y in full(x)]

    full_decomp = {c: full(c) for c in decomp}
    compose = []
    for c, d in sorted(decomp.items()):
        # A primary composite: a two-code-point canonical decomposition that NFC recomposes.
        if len(d) == 2 and ud.normalize("NFC", chr(d[0]) + chr(d[1])) == chr(c):
            compose.append((d[0], d[1], c))
    second = {s for _, s, _ in compose} | set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))
    qc_no = {c for c in decomp if ud.normalize("NFC", chr(c)) != chr(c)}
    qc_not_yes = sorted(qc_no | second)

    fold = []
    for c in all_cps:
        if 0xD800 <= c <= 0xDFFF:
            continue
        f = chr(c).casefold()
        if len(f) == 1 and ord(f) != c:
            fold.append((c, ord(f)))
    return dict(runs=runs, white=white, word_extra=word_extra, ccc=ccc, full_decomp=full_decomp, compose=compose,
                qc_not_yes=qc_not_yes, fold=fold)


def ranges(cps):
    out = []
    for c in sorted(cps):
        if out and out[-1][1] + 1 == c:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def emit_array(name, ctype, values, per_line=8):
    lines = [f"extern const {ctype} {name}[] = {{"]
    for i in range(0, len(values), per_line):
        lines.append("    " + " ".join(f"{v}," for v in values[i:i + per_line]))
    lines.append("};")
    lines.append(f"extern const size_t {name}_size = {len(values)};")
    return "\n".join(lines)


def render(t):
    hexs = lambda v: f"0x{v:X}"
    parts = [
        "// GENERATED by data_tools/gen_unicode_tables.py: do not edit; rerun the script instead.",
        f"// Unicode {WANT_UNICODE} general categories and White_Space (HF tokenizers' Oniguruma regexes), NFC data",
        f"// of Unicode {NFC_AGE_MAX} (HF's unicode-normalization-alignments), \\w extras and simple case folding.",
        "// Layouts are described in unicode_tables.h.",
        "#include \"tokenizer/unicode_tables.h\"",
        "",
        "namespace hs::tokenizer::unicode_data {",
        "",
        f"extern const char kUnicodeVersion[] = \"{WANT_UNICODE}\";",
        f"extern const char kNormalizationVersion[] = \"{NFC_AGE_MAX}\";",
        emit_array("kCategoryRuns", "uint32_t", [hexs(c << 8 | k) for c, k in t["runs"]]),
        emit_array("kWhiteSpace", "uint32_t", [hexs(c) for c in t["white"]]),
        emit_array("kWordExtraRanges", "uint32_t", [hexs(v) for r in ranges(t["word_extra"]) for v in r]),
        emit_array("kCombiningClass", "uint32_t", [hexs(c << 8 | k) for c, k in t["ccc"]]),
        emit_array("kNfcQcNotYesRanges", "uint32_t", [hexs(v) for r in ranges(t["qc_not_yes"]) for v in r]),
    ]
    index, chars = [], []
    for c in sorted(t["full_decomp"]):
        d = t["full_decomp"][c]
        index.append((c, len(chars), len(d)))
        chars.extend(d)
    parts.append(emit_array("kDecompIndex", "uint32_t", [hexs(v) for c, off, n in index for v in (c, off << 4 | n)]))
    parts.append(emit_array("kDecompChars", "uint32_t", [hexs(c) for c in chars]))
    parts.append(emit_array("kCompose", "uint32_t", [hexs(v) for tri in t["compose"] for v in tri], per_line=9))
    parts.append(emit_array("kCaseFold", "uint32_t", [hexs(v) for pair in t["fold"] for v in pair]))
    parts += ["", "}  // namespace hs::tokenizer::unicode_data", ""]
    return "\n".join(parts)


def verify(t, ud):
    """Compares the tables with HF tokenizers' own behaviour on every code point."""
    try:
        from tokenizers import Regex, normalizers, pre_tokenizers
    except ImportError:
        skip("tokenizers is not installed")
    import random
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    text = "".join(map(chr, cps))
    cat = [0] * 0x110000
    for i, (start, k) in enumerate(t["runs"]):
        end = t["runs"][i + 1][0] if i + 1 < len(t["runs"]) else 0x110000
        cat[start:end] = [k] * (end - start)
    ok = True
    for name, pattern, mine in [
        ("\\p{L}", r"\p{L}", {c for c in cps if CATEGORIES[cat[c]][0] == "L"}),
        ("\\p{N}", r"\p{N}", {c for c in cps if CATEGORIES[cat[c]][0] == "N"}),
        ("\\s", r"\s", set(t["white"])),
    ]:
        kept = pre_tokenizers.Split(Regex(pattern), behavior="removed").pre_tokenize_str(text)
        hf = set(cps) - {ord(ch) for piece, _ in kept for ch in piece}
        if hf != mine:
            ok = False
            print(f"{name}: HF has {len(hf - mine)} code points more, {len(mine - hf)} fewer, "
                  f"e.g. {sorted(hf ^ mine)[:10]}")
        else:
            print(f"{name}: {len(hf)} code points, identical to HF")
    # NFC: a Python model of the generated data against HF's NFC normalizer.
    ccc = dict(t["ccc"])
    comp = {(a, b): c for a, b, c in t["compose"]}

    def nfc(s):
        out = []
        for ch in map(ord, s):
            if 0xAC00 <= ch <= 0xD7A3:
                si = ch - 0xAC00
                out += [0x1100 + si // 588, 0x1161 + si % 588 // 28] + ([0x11A7 + si % 28] if si % 28 else [])
            else:
                out += t["full_decomp"].get(ch, [ch])
        for i in range(1, len(out)):  # canonical ordering (insertion sort, stable)
            j = i
            while j > 0 and ccc.get(out[j], 0) and ccc.get(out[j - 1], 0) > ccc.get(out[j], 0):
                out[j - 1], out[j] = out[j], out[j - 1]
                j -= 1
        res, starter, last = [], None, -1
        for ch in out:
            k = ccc.get(ch, 0)
            if starter is not None and (last < k or last == 0 and len(res) - 1 == starter):
                a = res[starter]
                if 0x1100 <= a < 0x1113 and 0x1161 <= ch < 0x1176:
                    res[starter] = 0xAC00 + ((a - 0x1100) * 21 + ch - 0x1161) * 28
                    continue
                if 0xAC00 <= a <= 0xD7A3 and (a - 0xAC00) % 28 == 0 and 0x11A7 < ch < 0x11C3:
                    res[starter] = a + ch - 0x11A7
                    continue
                if (a, ch) in comp:
                    res[starter] = comp[(a, ch)]
                    continue
            if k == 0:
                starter = len(res)
            last = k
            res.append(ch)
        return "".join(map(chr, res))

    random.seed(1)
    marks = [c for c in cps if ud.combining(chr(c))]
    bases = [c for c in cps if CATEGORIES[cat[c]][0] == "L"][:5000] + [0x1100, 0x1161, 0x11A8, 0xAC00, 0x0B47, 0x0B3E]
    items = [chr(c) for c in cps if c] + [ud.normalize("NFD", chr(c)) for c in cps if c and ud.normalize("NFD", chr(c)) != chr(c)]
    for _ in range(100000):
        items.append(chr(random.choice(bases)) + "".join(
            chr(random.choice(marks if random.random() < 0.8 else bases)) for _ in range(random.randint(1, 4))))
    hf = normalizers.NFC().normalize_str("\0".join(items)).split("\0")
    bad = [(i, h) for i, h in zip(items, hf) if nfc(i) != h]
    if bad:
        ok = False
        print(f"NFC: {len(bad)} of {len(items)} strings differ from HF, e.g. "
              f"{[([hex(ord(x)) for x in i], [hex(ord(x)) for x in h]) for i, h in bad[:3]]}")
    else:
        print(f"NFC: {len(items)} strings (every code point, every NFD form, random mark sequences) identical to HF")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="fail if the committed table differs from a fresh one")
    ap.add_argument("--verify", action="store_true", help="also compare the data with HF tokenizers")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    ud = load_ucd()
    tables = build(ud)
    text = render(tables)
    status = 0
    if args.check:
        current = open(args.out, encoding="utf-8").read() if os.path.exists(args.out) else ""
        if current != text:
            print(f"{args.out} is stale: rerun data_tools/gen_unicode_tables.py", file=sys.stderr)
            status = 1
        else:
            print(f"{args.out} is up to date")
    else:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {args.out}: {len(tables['runs'])} category runs, {len(tables['ccc'])} combining classes, "
              f"{len(tables['full_decomp'])} decompositions, {len(tables['compose'])} compositions, "
              f"{len(tables['fold'])} case folds")
    if args.verify and not verify(tables, ud):
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
