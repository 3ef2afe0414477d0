#!/usr/bin/env bash
# Fuzzing (issue #9): runs each cargo-fuzz target of fuzz/ for a set time, one after another,
# one process each (libFuzzer's default: no -jobs). Needs a nightly toolchain; installs cargo-fuzz when missing.
# Targets: normalize, segment, tokenize (encode/decode), augment, jsonl (the task readers).
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 600 s, every target)
# Crashes land in fuzz/artifacts/TARGET/; the corpus grows in fuzz/corpus/TARGET/ (both
# gitignored). The summary line per target gives runs, coverage and corpus size.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(normalize segment tokenize augment jsonl)
cargo +nightly --version >/dev/null 2>&1 || { echo "needs a nightly toolchain: rustup toolchain install nightly" >&2; exit 1; }
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
cd fuzz
for t in "${targets[@]}"; do
  cargo +nightly fuzz build -O "$t"
  mkdir -p "corpus/$t"
  echo "== $t: ${secs}s"
  log=$(mktemp)
  if cargo +nightly fuzz run -O "$t" "corpus/$t" -- -max_total_time="$secs" \
      -max_len=4096 -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1; then
    grep -E "^#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb" "$log" || tail -3 "$log"
    echo "$t: no crash"
  else
    tail -40 "$log"
    echo "$t: CRASH (see fuzz/artifacts/$t/)" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
done
