#!/usr/bin/env bash
# Data-parallel throughput on this machine: one process with global batch 2B against
# `mpirun -np 2` ranks with batch B each (the same steps; see README "Distributed training").
# Each run gets all cores: the single process uses every core, each rank half of them.
# Prints tokens/s of the training loop, the speed-up and the gradient bytes all-reduced per step.
# Usage: scripts/bench-ddp.sh [STEPS] [B]      (defaults: 40 steps, B = 8)
set -euo pipefail
export RUST_BACKTRACE=0
cd "$(dirname "${BASH_SOURCE[0]}")/.."
steps=${1:-40}
batch=${2:-8}
scripts/setup-libtorch.sh >/dev/null
scripts/setup-mpi.sh
cargo build --release --locked -q -p mtgpt-cli --features mpi
bin=target/release/mtgpt
cores=$(nproc)
half=$(( cores / 2 > 0 ? cores / 2 : 1 ))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The demo-sized model (4 layers, d 256, 128-token context) on the LM and a classifier task,
# no evaluation until the end so the loop is all training.
sets=(--set train.steps="$steps" --set train.pretrain_steps=0 --set train.eval_every=0
      --set train.checkpoint_every=0 --set model.n_layer=4 --set model.n_head=4
      --set model.d_model=256 --set model.block_size=128 --set model.dropout=0.0)
run() { # $1 = out folder, $2 = batch per process, $3 = extra train args, rest = launcher
  local out=$1 b=$2 extra=$3; shift 3
  # shellcheck disable=SC2086 # $extra is empty or one word pair
  "$@" train --config configs/smoke.toml --out "$out" --no-progress --log-every "$steps" \
    "${sets[@]}" --set train.batch_size="$b" $extra >/dev/null 2>"$out.log" \
    || { cat "$out.log" >&2; exit 1; }
  python3 -c 'import json,sys
rows=[json.loads(l) for l in open(sys.argv[1]) if "tokens_per_s" in l]
print("%.0f" % rows[-1]["tokens_per_s"])' "$out/metrics.jsonl"
}
one=$(MTGPT_THREADS=$cores run "$work/one" $((2 * batch)) "" "$bin")
two=$(OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 run "$work/two" "$batch" \
  "--distributed mpi" mpirun --oversubscribe --bind-to none -np 2 -x MTGPT_THREADS=$half "$bin")
params=$(python3 - "$work/two/model" <<'PY'
import json, struct, sys, os
n = 0
for f in ("model.safetensors", "heads.safetensors"):
    with open(os.path.join(sys.argv[1], f), "rb") as fh:
        (k,) = struct.unpack("<Q", fh.read(8)); hdr = json.loads(fh.read(k))
    for name, t in hdr.items():
        if name != "__metadata__":
            c = 1
            for d in t["shape"]: c *= d
            n += c
print(n)
PY
)
echo "machine: $cores cores; steps=$steps global batch=$((2 * batch)) (1 process) = 2 ranks × $batch"
echo "1 process  ($cores threads): tokens_per_s=$one"
echo "2 ranks (2 × $half threads): tokens_per_s=$two"
python3 -c "import sys; print(f'speed-up 2 ranks / 1 process: {float(sys.argv[2]) / float(sys.argv[1]):.2f}x')" "$one" "$two"
python3 -c "import sys; p=int(sys.argv[1]); print(f'parameters={p} all-reduced per step={4 * p / 2**20:.1f} MiB (f32; one bucket per 25 MiB)')" "$params"
