#!/usr/bin/env bash
# The README's first command: sets up libtorch if missing, builds mtgpt in release and runs
# the whole pipeline on the shipped demo config (`mtgpt run`: data → preprocessing → LM
# pretraining → joint training → test scores → compression → report). Extra arguments go to
# `mtgpt run` (e.g. --baselines, --fresh, --set train.max_seconds=120).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup-libtorch.sh
cargo build --release --locked -p mtgpt-cli
bin=target/release/mtgpt
"$bin" info
"$bin" run --config configs/demo.toml --out runs/demo "$@"
echo "demo: open runs/demo/report.md (scores, curves, samples, compression, config)"
