#!/usr/bin/env bash
# Bounded memory of preprocessing (issue #9): `mtgpt prep` on a ~1 GB LM corpus made by
# repeating the shipped English and Chinese text (built in a temporary folder, never
# committed), measured with /usr/bin/time -v. Prints the peak resident set size and the time.
# The corpus is read in chunks and its token ids are written as they come; the tokenizer is
# trained on the first 64 MiB of LM text (mtgpt_text::prep::TOKENIZER_LM_BYTES).
# Usage: scripts/bench-memory.sh [MB]   (corpus size, default 1024)
set -euo pipefail
export RUST_BACKTRACE=0
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mb=${1:-1024}
source scripts/lib.sh
build_mtgpt
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (Debian/Ubuntu: apt-get install time)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat data/lm_en/train.txt data/lm_zh/train.txt > "$work/unit.txt"
unit=$(stat -c %s "$work/unit.txt")
copies=$(( (mb * 1024 * 1024 + unit - 1) / unit ))
for _ in $(seq "$copies"); do cat "$work/unit.txt"; done > "$work/corpus.txt"
size=$(stat -c %s "$work/corpus.txt")
echo "corpus: $copies copies of data/lm_{en,zh}/train.txt, $((size / 1024 / 1024)) MiB, $(wc -l < "$work/corpus.txt") lines"

cat > "$work/bench.toml" <<TOML
name = "bench-memory"
[tokenizer]
vocab_size = 8000
[[task]]
name = "lm"
kind = "lm"
train = "$work/corpus.txt"
valid = "data/lm_en/valid.txt"
test = "data/lm_en/test.txt"
TOML
/usr/bin/time -v "$bin" -q prep --config "$work/bench.toml" --out "$work/prep" 2> "$work/time.txt"
rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time.txt")
wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/time.txt")
bin_mb=$(( $(stat -c %s "$work/prep/lm/train.bin") / 1024 / 1024 ))
echo "prep: peak RSS $((rss_kb / 1024)) MiB, wall $wall, train.bin $bin_mb MiB of u32 token ids"
