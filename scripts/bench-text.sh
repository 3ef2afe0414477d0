#!/usr/bin/env bash
# Text pipeline throughput, mtgpt vs Python on the same corpus and the same tokenizer.json:
#   normalize (NFKC) → segment (jieba) → byte-level BPE encode.
# Python side: `jieba` + `tokenizers` installed with pip into a throwaway venv (.venv-bench).
# mtgpt side: `mtgpt tokenizer encode --normalize --stats` at 1 and 2 rayon threads.
# Both sides time the pipeline after loading (Python: after `import`, jieba.initialize() and
# Tokenizer.from_file; mtgpt: after start-up and tokenizer loading, which --stats excludes).
# mtgpt's whole-process time is printed too (start-up is mostly loading libtorch).
# Usage: scripts/bench-text.sh [REPEATS]   (median of REPEATS runs, default 5)
set -euo pipefail
export RUST_BACKTRACE=0
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repeats=${1:-5}
source scripts/lib.sh
build_mtgpt

ensure_venv "import jieba, tokenizers, numpy" jieba tokenizers numpy

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Full fetched corpora when present (scripts/fetch-data.sh), else the shipped samples.
src=data; [ -f data/full/lm_zh/train.txt ] && src=data/full
cat "$src/lm_zh/train.txt" "$src/lm_en/train.txt" > "$work/corpus.txt"
"$bin" -q tokenizer train --input "$work/corpus.txt" --vocab-size 8000 --out "$work/tokenizer.json"
mb=$(python3 -c "import os;print(os.path.getsize('$work/corpus.txt')/1e6)")
echo "corpus: $src/lm_{zh,en}/train.txt, $mb MB, $(wc -l < "$work/corpus.txt") lines"

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
time_mtgpt() { # threads → median in-process seconds
  for _ in $(seq "$repeats"); do
    RAYON_NUM_THREADS=$1 "$bin" -q tokenizer encode --normalize --stats --tokenizer "$work/tokenizer.json" \
      < "$work/corpus.txt" 2>&1 > "$work/ids-$1.txt" | sed -n 's/.*seconds=\([0-9.]*\).*/\1/p'
  done | median
}
wall_mtgpt() { # whole process, 2 threads
  for _ in $(seq "$repeats"); do
    local t0 t1
    t0=$(date +%s.%N)
    RAYON_NUM_THREADS=2 "$bin" -q tokenizer encode --normalize --tokenizer "$work/tokenizer.json" < "$work/corpus.txt" > /dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
  done | median
}
cat > "$work/py.py" <<'PY'
import sys, time, unicodedata, jieba
from tokenizers import Tokenizer
jieba.setLogLevel(60); jieba.initialize()
tok = Tokenizer.from_file(sys.argv[1])
lines = open(sys.argv[2], encoding="utf-8").read().split("\n")
if lines and lines[-1] == "": lines.pop()
t0 = time.perf_counter()
pieces = [jieba.lcut(unicodedata.normalize("NFKC", l), HMM=True) for l in lines]
encs = tok.encode_batch(pieces, is_pretokenized=True, add_special_tokens=False)
n = sum(len(e.ids) for e in encs)
print(time.perf_counter() - t0, n)
PY
py=$(for _ in $(seq "$repeats"); do "$venv/bin/python" "$work/py.py" "$work/tokenizer.json" "$work/corpus.txt" | cut -d' ' -f1; done | median)
t1=$(time_mtgpt 1)
t2=$(time_mtgpt 2)
tw=$(wall_mtgpt)
cmp -s "$work/ids-1.txt" "$work/ids-2.txt" || { echo "bench-text: 1- and 2-thread outputs differ" >&2; exit 1; }
ntok=$(wc -w < "$work/ids-2.txt")
printf 'python jieba+tokenizers: %.2f s  %.2f MB/s\n' "$py" "$(echo "$mb / $py" | bc -l)"
printf 'mtgpt 1 thread:          %.2f s  %.2f MB/s  (%s tokens)\n' "$t1" "$(echo "$mb / $t1" | bc -l)" "$ntok"
printf 'mtgpt 2 threads:         %.2f s  %.2f MB/s\n' "$t2" "$(echo "$mb / $t2" | bc -l)"
printf 'mtgpt 2 threads, whole process incl. start-up: %.2f s\n' "$tw"
printf 'ratio mtgpt(2 threads)/python = %.1fx   scaling 1→2 threads = %.2fx\n' "$(echo "$py / $t2" | bc -l)" "$(echo "$t1 / $t2" | bc -l)"
