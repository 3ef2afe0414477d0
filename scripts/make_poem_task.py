#!/usr/bin/env python3
"""Writes the demo's generative task data/poem_zh/{train,valid,test}.jsonl: the second half of
a couplet of a Song-dynasty shi poem from its first half ({"source": "...", "target": "..."}),
5- or 7-character lines, from npm `chinese-poetry` 2.0.1 (MIT; quantangshi/poet.song.N.json).

The shipped base (models/base-tiny) read Tang poems (poet.tang.*), the Shijing, Chuci, the
Four Books and Song ci, never these Song shi; halves that occur in its classical corpus
(data/full/corpus/zh_classical.txt, when present) are dropped all the same. Splits go by poem,
so no poem has couplets in two splits. Deterministic: the same archive gives the same files.

    python3 scripts/make_poem_task.py [--train 4000 --valid 300 --test 300]
"""
import argparse, hashlib, json, os, re, sys, tarfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fetch_corpus  # noqa: E402  (the pinned npm download and its cache)

HAN = re.compile(r"^[\u4e00-\u9fff]+$")
COUPLET = re.compile(r"^([^，。]+)，([^，。]+)[。！？]$")


def couplets(poem):
    out = []
    for p in poem.get("paragraphs") or []:
        m = COUPLET.match(p.strip())
        if not m:
            continue
        a, b = m.group(1), m.group(2)
        if len(a) == len(b) and len(a) in (5, 7) and HAN.match(a) and HAN.match(b):
            out.append((a, b))
    return out


def corpus_halves(path):
    if not os.path.isfile(path):
        return set()
    with open(path, encoding="utf-8") as f:
        return {s for s in re.split(r"[，。！？；\s]+", f.read()) if s}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--valid", type=int, default=300)
    ap.add_argument("--test", type=int, default=300)
    ap.add_argument("--out", default="data/poem_zh")
    ap.add_argument("--cache", default="data/full/.cache")
    a = ap.parse_args()
    tar = tarfile.open(fetch_corpus.fetch_npm("chinese-poetry", a.cache), "r:gz")
    files = sorted(
        (n for n in tar.getnames() if re.fullmatch(r"package/dist/quantangshi/poet\.song\.\d+\.json", n)),
        key=lambda n: int(n.split(".")[-2]),
    )
    seen_corpus = corpus_halves("data/full/corpus/zh_classical.txt")
    want = {"test": a.test, "valid": a.valid, "train": a.train}
    rows = {k: [] for k in want}
    seen, dropped = set(), 0
    for name in files:
        if all(len(rows[k]) >= want[k] for k in want):
            break
        for poem in json.load(tar.extractfile(name)):
            pairs = couplets(poem)
            if not pairs:
                continue
            key = (poem.get("title", "") + poem.get("author", "") + pairs[0][0]).encode()
            h = int(hashlib.sha256(key).hexdigest()[:8], 16) % 20
            split = "test" if h == 0 else "valid" if h == 1 else "train"
            for src, tgt in pairs:
                if src in seen:
                    continue
                seen.add(src)
                if src in seen_corpus or tgt in seen_corpus:
                    dropped += 1
                    continue
                if len(rows[split]) < want[split]:
                    rows[split].append({"source": src, "target": tgt})
    os.makedirs(a.out, exist_ok=True)
    for k, v in rows.items():
        if len(v) < want[k]:
            sys.exit(f"only {len(v)} {k} couplets found, {want[k]} wanted")
        with open(os.path.join(a.out, f"{k}.jsonl"), "w", encoding="utf-8") as f:
            for r in v:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{a.out}: " + ", ".join(f"{k} {len(v)}" for k, v in rows.items())
          + f" couplets; {dropped} dropped as present in the base's corpus")


if __name__ == "__main__":
    main()
