#!/usr/bin/env bash
# Bounded memory of preprocessing (issue #9) and of pretraining on a corpus far larger than
# memory would hold as a token list (issue #12): `mtgpt prep` on a ~1 GB LM corpus made by
# repeating the shipped English and Chinese text (built in a temporary folder, never
# committed), then `mtgpt pretrain` on it (preprocessing again inside its run folder, then
# training steps over the memory-mapped token file), and the training alone (its prep/
# reused), each measured with /usr/bin/time -v. Prints peak resident set sizes and times.
# The corpus is read in chunks and its token ids are written as they come; the tokenizer is
# trained on the first 64 MiB of LM text (mtgpt_text::prep::TOKENIZER_LM_BYTES); training
# maps the token file and only the windows it samples are paged in.
# Usage: scripts/bench-memory.sh [MB] [STEPS]   (corpus size, default 1024; pretraining steps, default 200)
set -euo pipefail
export RUST_BACKTRACE=0
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mb=${1:-1024}
steps=${2:-200}
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

pretrain=("$bin" -q pretrain --config "$work/bench.toml" --work "$work/run" --out "$work/base" --no-progress
  --set model.n_layer=2 --set model.d_model=128 --set model.n_head=4 --set model.block_size=128
  --set train.steps="$steps" --set train.eval_every=0 --set train.checkpoint_every=0
  --set train.pretrain_steps=0 --set train.batch_size=16)
/usr/bin/time -v "${pretrain[@]}" > /dev/null 2> "$work/time.txt"
rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time.txt")
wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/time.txt")
echo "pretrain (prep + $steps steps): peak RSS $((rss_kb / 1024)) MiB, wall $wall"
rm -rf "$work/run/checkpoints" "$work/run/model" "$work/run/best"
/usr/bin/time -v "${pretrain[@]}" > /dev/null 2> "$work/time.txt"
rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time.txt")
wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/time.txt")
tokens=$(( $(stat -c %s "$work/run/prep/lm/train.bin") / 4 ))
echo "pretrain ($steps steps, prep/ reused, $tokens tokens mapped): peak RSS $((rss_kb / 1024)) MiB, wall $wall"
