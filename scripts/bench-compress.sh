#!/usr/bin/env bash
# Compression figures: every method of `mtgpt compress` on one trained model, each with its
# before/after table (sizes, decode and predict speed measured interleaved in one process,
# medians), then libtorch's int8 kernels against fp32/bf16 on the trunk's matmul shapes.
#   scripts/bench-compress.sh [MODEL_DIR] [CONFIG] [FINETUNE_STEPS]
# Defaults: runs/demo/model, configs/demo.toml, the config's compress.finetune_steps.
# Outputs go to runs/bench-compress/<method>/ (compress.json there holds the full report).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-runs/demo/model}
config=${2:-configs/demo.toml}
steps=${3:-}
scripts/setup-libtorch.sh >/dev/null
cargo build --release -q -p mtgpt-cli
out=runs/bench-compress
mkdir -p "$out"
extra=()
if [ -n "$steps" ]; then extra=(--set "compress.finetune_steps=$steps"); fi
for m in int8 prune prune-structured distill; do
  echo "== $m"
  rm -rf "${out:?}/$m"
  target/release/mtgpt -q compress --model "$model" --config "$config" --method "$m" \
    --out "$out/$m" "${extra[@]}"
done
echo "== int8 kernels (median µs per matmul)"
cargo run --release -q -p mtgpt-compress --example int8_kernels
