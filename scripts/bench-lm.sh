#!/usr/bin/env bash
# Character-level Shakespeare at equal wall-clock time: mtgpt vs an equivalent PyTorch eager
# script (scripts/bench_lm.py) — same model, same token files (written by mtgpt's prep), same
# windows, optimizer, warmup, clipping and precision — then both scored on the same first
# N validation tokens. Prints both validation losses (nats per character).
# Usage: scripts/bench-lm.sh [SECONDS] [EVAL_TOKENS]   (defaults: the config's max_seconds, 200000)
set -euo pipefail
export RUST_BACKTRACE=0
cd "$(dirname "${BASH_SOURCE[0]}")/.."
config=configs/bench-shakespeare-char.toml
source scripts/lib.sh
build_mtgpt
ensure_venv "import torch, numpy" torch==2.13.0 numpy
[ -f data/full/lm_en/train.txt ] || scripts/fetch-data.sh
read -r name L H D T B lr warmup wd b1 b2 clip secs prec seed < <(python3 - "$config" <<'PY'
import sys, tomllib
c = tomllib.load(open(sys.argv[1], "rb")); m, t = c["model"], c["train"]
print(c["name"], m["n_layer"], m["n_head"], m["d_model"], m["block_size"], t["batch_size"], t["lr"],
      t["warmup_steps"], t["weight_decay"], t["beta1"], t["beta2"], t["grad_clip"], t["max_seconds"],
      m.get("precision", "fp32"), c.get("seed", 0))
PY
)
secs=${1:-$secs}
eval_tokens=${2:-200000}
threads=$(nproc)
out=runs/bench-lm
rm -rf "$out/mtgpt"
echo "bench-lm: ${L}L/${H}H/${D}d block $T batch $B $prec, ${secs}s each, $threads threads, eval on $eval_tokens valid tokens"

"$bin" -q train --config "$config" --out "$out/mtgpt" --set "train.max_seconds=$secs" --no-progress >/dev/null
steps=$(python3 -c "import json;print(json.load(open('$out/mtgpt/checkpoints/'+sorted(__import__('os').listdir('$out/mtgpt/checkpoints'))[-1]+'/trainer.json'))['step'])")
ours=$("$bin" -q eval --model "$out/mtgpt/model" --config "$config" --split valid --lm-tokens "$eval_tokens" --json |
  python3 -c "import json,sys;print(json.load(sys.stdin)['tasks'][0]['metrics']['loss'])")
task=$(python3 -c "import tomllib;print(tomllib.load(open('$config','rb'))['task'][0]['name'])")
theirs=$("$venv/bin/python" scripts/bench_lm.py "$out/mtgpt/prep" "$task" "$L" "$H" "$D" "$T" "$B" "$lr" "$warmup" \
  "$wd" "$b1" "$b2" "$clip" "$secs" "$prec" "$eval_tokens" "$threads" "$seed")
echo "mtgpt:   steps=$steps val_loss=$(printf %.4f "$ours")"
echo "pytorch: $theirs"
python3 - "$ours" "$theirs" <<'PY'
import sys
ours = float(sys.argv[1]); theirs = float(sys.argv[2].split("val_loss=")[1])
print(f"val_loss mtgpt {ours:.4f} vs pytorch {theirs:.4f}: {'mtgpt lower or equal' if ours <= theirs else 'pytorch lower'}; goal <= 1.70: {'met' if ours <= 1.70 else 'not met'}")
PY
